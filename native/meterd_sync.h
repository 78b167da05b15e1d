/*
 * meterd security-log syncer: the threads that seal, write and sync.
 *
 * The store decides what goes into the log (records, rotation, capacity,
 * checkpoints) and submits each group as encoded fields.  Two workers share
 * two jobs, one worker per job at a time.  Sealing holds the chain head and
 * the evolving key: it takes every group submitted so far, seals them
 * (meterd_seal.c) and writes them in one write.  Syncing makes everything
 * written so far durable with one fdatasync, so groups written while a sync
 * runs share the next one and the next sync never waits for sealing; it then
 * publishes the durable seq, wakes blocked waiters and writes 1 to each
 * subscribed eventfd (one per event loop).  The key thread then writes the
 * key of the record after the durable head to the key file (two 64-byte
 * slots, see meterd/seclog/keys.py), lets the next segment sync's device
 * cache flush make it durable (or syncs it itself when the log goes idle)
 * and erases the older slot: the key on disk is never ahead of the log, and
 * an acknowledgement waits for one flush, not two (see keep_keys).
 *
 * Because no step needs the interpreter, the disk and the second core work
 * on one group while the appenders of the next one run.
 */
#ifndef METERD_SYNC_H
#define METERD_SYNC_H

#include <stdint.h>

#define MTR_SYNC_KEY_BYTES 32
#define MTR_SYNC_DIGEST_BYTES 32

/*
 * Storage faults a test can inject: see mtr_syncer_set_fault, which exists only
 * in the test build (compiled with MTR_SYNC_FAULTS, the meterd._seal_faults
 * module); the daemon's build has no fault code at all.
 */
#define MTR_SYNC_FAULT_NONE 0
#define MTR_SYNC_FAULT_FAIL 1  /* every sync fails with errno value */
#define MTR_SYNC_FAULT_STALL 2 /* every sync waits until the fault is changed */
#define MTR_SYNC_FAULT_DELAY 3 /* every sync takes value microseconds longer */
#define MTR_SYNC_FAULT_TEAR 4  /* every write goes in two halves, value microseconds apart (legal partial writes) */
#define MTR_SYNC_KEY_SLOT 64
#define MTR_SYNC_MAX_SUBSCRIBERS 16
/* Sync durations kept for the flush metric until read. */
#define MTR_SYNC_LATENCIES 256

#define MTR_SYNC_E_TIMEOUT (-1)  /* not durable within the timeout */
#define MTR_SYNC_E_CLOSED (-2)   /* stopped before the seq became durable */
#define MTR_SYNC_E_ARGUMENT (-3) /* bad argument (a record count that does not match, too many subscribers) */
#define MTR_SYNC_E_SYSTEM (-4)   /* a thread or memory could not be had */
#define MTR_SYNC_E_SEAL (-5)     /* the sealer refused a group, or a rotation came before the log was durable */
/*
 * A positive return is the errno of the failed write, fdatasync or key
 * write; that and MTR_SYNC_E_SEAL fail the syncer for good.
 */

typedef struct mtr_syncer mtr_syncer;

/*
 * The key file: two MTR_SYNC_KEY_SLOT-byte slots, this the one definition of
 * a slot (meterd/seclog/keys.py reads and writes slots only through these):
 * "MSK1", seq_next (u64 big-endian: the seq of the next record the key will
 * seal), the 32-byte key, CRC-32 of the preceding 44 bytes (big-endian), zero
 * padding.  mtr_key_unpack returns 0 for a valid slot, -1 otherwise.
 */
void mtr_key_pack(uint8_t *slot, uint64_t seq_next, const uint8_t *key);
int mtr_key_unpack(const uint8_t *slot, uint64_t *seq_next, uint8_t *key);

/*
 * Start a syncer for the open head segment segment_fd (it becomes the
 * syncer's, closed at stop or rotation) and key file key_fd (the caller's,
 * open until mtr_syncer_stop returns), whose valid slot is key_slot (0 or 1).
 * seq, prev and key describe the durable head: its seq, the digest of its
 * body, and the key sealing seq + 1.  Returns NULL if its threads could not start.
 */
mtr_syncer *mtr_syncer_start(int segment_fd, int key_fd, int key_slot, uint64_t seq, const uint8_t *prev,
                             const uint8_t *key);

/*
 * Queue a group: n records' fields, separated by single newlines in records
 * (records_len bytes; fields never hold one), sealed with the seqs after the
 * last submitted (the syncer numbers records: mtr_syncer_submitted is the
 * one place the next seq comes from) and timestamp ts.  If new_segment_fd >= 0
 * the group starts that segment and the old one is closed; everything before
 * must be durable already (the store waits for it; otherwise the syncer fails
 * with MTR_SYNC_E_SEAL).  patch_last: see mtr_seal.  The group is copied;
 * returns 0, MTR_SYNC_E_CLOSED, MTR_SYNC_E_ARGUMENT (n does not match the
 * records) or the failure.  On error new_segment_fd stays the caller's.
 */
int mtr_syncer_submit(mtr_syncer *s, const uint8_t *records, uint64_t records_len, uint32_t n,
                      const uint8_t *ts, uint32_t ts_len, int new_segment_fd, int patch_last);

/* The seq of the last record submitted. */
uint64_t mtr_syncer_submitted(mtr_syncer *s);

/* Wait until seq is durable: 0, MTR_SYNC_E_TIMEOUT, MTR_SYNC_E_CLOSED or the failure's errno. */
int mtr_syncer_wait(mtr_syncer *s, uint64_t seq, int64_t timeout_ns);

/* The highest durable seq, and the failure's errno (0 while healthy). */
uint64_t mtr_syncer_durable(mtr_syncer *s);
int mtr_syncer_failure(mtr_syncer *s);

/* Have eventfd fd written after every sync (and on mtr_syncer_notify); remove it again. */
int mtr_syncer_subscribe(mtr_syncer *s, int fd);
void mtr_syncer_unsubscribe(mtr_syncer *s, int fd);

/* Wake every subscriber now (a group failed without reaching the disk). */
void mtr_syncer_notify(mtr_syncer *s);

/* Move up to cap sync durations (seconds) not read before into out; return how many. */
uint32_t mtr_syncer_latencies(mtr_syncer *s, double *out, uint32_t cap);

/*
 * Sync everything requested and its key, stop the threads, wake every waiter
 * and subscriber.  Returns 0 or the failure's errno.  Later calls return
 * MTR_SYNC_E_CLOSED; the memory stays valid until mtr_syncer_free.
 */
int mtr_syncer_stop(mtr_syncer *s);

#ifdef MTR_SYNC_FAULTS
/* Make the storage misbehave as fault says from the next sync on (tests of failure handling). */
void mtr_syncer_set_fault(mtr_syncer *s, int fault, int64_t value);
#endif

/* Release a stopped syncer (stops it first if needed); the key is erased. */
void mtr_syncer_free(mtr_syncer *s);

#endif
