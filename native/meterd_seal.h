/*
 * meterd security-log sealer: turns a batch of encoded record fields into
 * chained, MAC'd, checksummed frames in one call (see meterd/seclog/codec.py
 * for the frame format, which this must reproduce byte for byte).
 *
 * The syncer (meterd_sync.c) calls it in its own thread for every group it
 * writes, so sealing never holds the interpreter lock.
 */
#ifndef METERD_SEAL_H
#define METERD_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define MTR_SEAL_FORMAT_VERSION 1
#define MTR_SEAL_KEY_BYTES 32
#define MTR_SEAL_DIGEST_BYTES 32
/* Bytes a frame adds to its fields and timestamp, rounded up generously. */
#define MTR_SEAL_FRAME_OVERHEAD 256

#define MTR_SEAL_E_ARGUMENT (-1) /* a null pointer or a zero-length timestamp */
#define MTR_SEAL_E_BYTE (-2)     /* a field or the timestamp holds a byte outside printable ASCII */
#define MTR_SEAL_E_SPACE (-3)    /* the output buffer is too small */
#define MTR_SEAL_E_CRYPTO (-4)   /* the SHA-256 implementation failed or is unavailable */
#define MTR_SEAL_E_PATCH (-5)    /* patch_last asked for, but the last record has no placeholder */

/* Fetch the SHA-256 implementation once; 0 on success, MTR_SEAL_E_CRYPTO otherwise. */
int mtr_seal_init(void);

/*
 * Seal n records after the head (seq, prev, key).
 *
 * fields:  the n records' encoded field fragments, concatenated; record i has
 *          lengths[i] bytes.
 * seq:     the sequence number of the head; record i gets seq + 1 + i.
 * ts:      the batch's timestamp (ts_len bytes, printable ASCII, no quote).
 * prev:    in: digest of the head's body; out: digest of the last sealed body.
 * key:     in: sealing key of record seq + 1; out: key of the record after
 *          the last sealed one.  Intermediate keys are erased.
 * out:     receives the frames, out_cap bytes available.
 * patch_last: if nonzero, the last record's fields end with a 64-character
 *          placeholder in quotes and a closing brace ("..."}), which is
 *          replaced by the hex digest of the record before it (a checkpoint's
 *          head_digest, known only here).
 *
 * Returns the number of bytes written, or a negative MTR_SEAL_E_* code, in
 * which case prev and key are unchanged.
 */
int64_t mtr_seal(const uint8_t *fields, const uint32_t *lengths, uint32_t n, uint64_t seq, const uint8_t *ts,
                 uint32_t ts_len, uint8_t *prev, uint8_t *key, uint8_t *out, uint64_t out_cap, int patch_last);

/* The exact size of the frame of a record with fields_len bytes of fields, at seq, with a ts_len timestamp. */
uint64_t mtr_seal_frame_size(uint64_t fields_len, uint64_t seq, uint32_t ts_len);

/* The exact size of the frames of n records with fields_len bytes of fields in all, from first_seq on. */
uint64_t mtr_seal_frames_size(uint64_t fields_len, uint64_t n, uint64_t first_seq, uint32_t ts_len);

/* CRC-32 (IEEE 802.3, as zlib's crc32) of len bytes. */
uint32_t mtr_crc32(const uint8_t *data, size_t len);

#endif
