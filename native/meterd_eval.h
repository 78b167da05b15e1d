/*
 * meterd_eval.h - the native access-control evaluator of meterd.
 *
 * The evaluator decides requests against a compiled policy table: a flat,
 * checksummed byte buffer produced by meterd's policy compiler.  The code
 * allocates nothing, performs no I/O and keeps no global state; every
 * function is reentrant and may be called from several threads at once on
 * the same table.  It reads the table with explicit little-endian loads, so
 * it runs unchanged on big-endian controllers and needs no alignment of the
 * buffer.
 *
 * TABLE FORMAT (version 1).  All integers are little-endian uint32 unless
 * stated otherwise; offsets are in bytes from the start of the buffer.
 *
 *   off  0  magic           "MTRT" (4 bytes)
 *   off  4  format_version  uint16, = 1
 *   off  6  header_size     uint16, = 32
 *   off  8  total_size      whole table, trailing CRC included
 *   off 12  policy_version  opaque to the evaluator; reported back
 *   off 16  n_channels      1 .. 32
 *   off 20  n_nodes         1 .. 2^20 scope-tree nodes; node 0 is the root "/"
 *   off 24  n_principals    0 .. 2^20
 *   off 28  n_grants        0 .. 2^24
 *   then    channel_caps    uint32[n_channels]      mask a channel may ever grant
 *           node_parent     uint32[n_nodes]         node_parent[0] = 0xFFFFFFFF,
 *                                                   node_parent[i] < i for i > 0
 *           principal_flags uint32[n_principals]    bit 0 = enabled, others 0
 *           grant_start     uint32[n_principals+1]  grant_start[0] = 0,
 *                                                   non-decreasing,
 *                                                   grant_start[n_principals]
 *                                                   = n_grants
 *           grants          {uint32 node; uint32 mask}[n_grants]
 *                                                   node < n_nodes
 *           crc32           CRC-32 (IEEE 802.3, as zlib.crc32) of every byte
 *                           before it
 *
 * total_size must equal the size implied by the counts and the length of
 * the buffer.  Every permission mask (channel caps and grant masks) may only
 * carry bits 0 .. MTR_N_PERMISSIONS-1.  The grants of principal p are
 * grants[grant_start[p] .. grant_start[p+1]).
 *
 * DECISION.  A request is (principal, permission bit, resource node,
 * channel).  The first matching rule gives the result:
 *   1. permission >= MTR_N_PERMISSIONS, channel >= n_channels or
 *      node >= n_nodes                                  -> BAD_REQUEST
 *   2. principal >= n_principals                         -> UNKNOWN_PRINCIPAL
 *   3. principal not enabled                             -> DISABLED
 *   4. no grant of the principal carries the bit         -> NOT_GRANTED
 *   5. no such grant is anchored on the path from the resource node up to
 *      the root (both ends included)                     -> OUT_OF_SCOPE
 *   6. the channel's cap lacks the bit                   -> CHANNEL_CAP
 *   7. otherwise                                         -> MTR_ALLOW
 * MTR_ALLOW is deliberately not 0 or 1, so that a zeroed or uninitialised
 * result buffer never reads as an allow.  A handle that mtr_table_open did
 * not accept decides MTR_DENY_BAD_TABLE for everything.
 */
#ifndef METERD_EVAL_H
#define METERD_EVAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Format constants. */
#define MTR_FORMAT_VERSION 1
#define MTR_HEADER_SIZE 32
#define MTR_N_PERMISSIONS 17
#define MTR_MAX_CHANNELS 32
#define MTR_MAX_NODES 1048576      /* 2^20 */
#define MTR_MAX_PRINCIPALS 1048576 /* 2^20 */
#define MTR_MAX_GRANTS 16777216    /* 2^24 */
#define MTR_NO_PARENT 0xFFFFFFFFu

/* Decision codes (one byte each). */
#define MTR_ALLOW 0xA5
#define MTR_DENY_UNKNOWN_PRINCIPAL 1
#define MTR_DENY_DISABLED 2
#define MTR_DENY_NOT_GRANTED 3
#define MTR_DENY_OUT_OF_SCOPE 4
#define MTR_DENY_CHANNEL_CAP 5
#define MTR_DENY_BAD_REQUEST 6
#define MTR_DENY_BAD_TABLE 7

/* Status codes of mtr_table_open and mtr_decide_batch: 0 or one negative
 * code per class of fault. */
#define MTR_OK 0
#define MTR_E_ARGUMENT (-1)     /* NULL pointer, or a handle not accepted */
#define MTR_E_SHORT (-2)        /* buffer shorter than the header */
#define MTR_E_MAGIC (-3)        /* magic is not "MTRT" */
#define MTR_E_VERSION (-4)      /* unsupported format_version */
#define MTR_E_HEADER_SIZE (-5)  /* header_size is not MTR_HEADER_SIZE */
#define MTR_E_COUNT (-6)        /* a count is out of its range */
#define MTR_E_SIZE (-7)         /* total_size disagrees with counts or length */
#define MTR_E_CHECKSUM (-8)     /* CRC-32 mismatch */
#define MTR_E_CHANNEL_CAP (-9)  /* a channel cap has a bit >= 17 */
#define MTR_E_PARENT (-10)      /* node_parent breaks the ordering rule */
#define MTR_E_FLAGS (-11)       /* a principal has a reserved flag bit set */
#define MTR_E_GRANT_START (-12) /* grant_start is not a valid offset list */
#define MTR_E_GRANT_NODE (-13)  /* a grant is anchored at a missing node */
#define MTR_E_GRANT_MASK (-14)  /* a grant mask has a bit >= 17 */

/*
 * A checked table.  Owned by the caller (stack, static or heap) and filled
 * by mtr_table_open; it points into the caller's buffer, which must stay
 * alive and unchanged for as long as the handle is used.  The count fields
 * may be read; the others are private.
 */
typedef struct mtr_table {
    uint32_t policy_version;
    uint32_t n_channels;
    uint32_t n_nodes;
    uint32_t n_principals;
    uint32_t n_grants;
    uint32_t accepted; /* private: set only by a successful open */
    const uint8_t *channel_caps;
    const uint8_t *node_parent;
    const uint8_t *principal_flags;
    const uint8_t *grant_start;
    const uint8_t *grants;
} mtr_table;

/* One request of a batch, in host byte order. */
typedef struct mtr_request {
    uint32_t principal;
    uint32_t permission;
    uint32_t node;
    uint32_t channel;
} mtr_request;

/*
 * Check a table buffer completely and, when it is valid, fill *table.
 *
 * Returns MTR_OK, or a negative MTR_E_* code naming the first fault found;
 * on any fault *table is cleared and decides MTR_DENY_BAD_TABLE.
 */
int mtr_table_open(mtr_table *table, const void *buf, size_t len);

/*
 * Decide one request.  Returns MTR_ALLOW or an MTR_DENY_* code; never
 * fails otherwise.
 */
uint8_t mtr_decide(const mtr_table *table, uint32_t principal, uint32_t permission, uint32_t node,
                   uint32_t channel);

/*
 * Decide n requests, writing one code per request to out[0 .. n).
 *
 * Returns MTR_OK, or MTR_E_ARGUMENT when (with n > 0) a pointer is NULL or
 * the handle was not accepted; then, unless out is NULL, every code written
 * is MTR_DENY_BAD_TABLE.  Requests are independent: the result is exactly
 * what mtr_decide gives for each.
 */
int mtr_decide_batch(const mtr_table *table, const mtr_request *requests, size_t n, uint8_t *out);

/* A short English description of a status code, never NULL. */
const char *mtr_strerror(int status);

#ifdef __cplusplus
}
#endif

#endif /* METERD_EVAL_H */
