/*
 * meterd security-log sealer.  Frame of one record (codec.py):
 *
 *   CRC SP BODY SP MAC LF
 *   BODY = {"v":1,"seq":<seq>,"ts":"<ts>",<fields>,"prev":"<hex digest of previous body>"}
 *   MAC  = hex HMAC-SHA-256(key[seq], SHA-256(BODY))
 *   CRC  = 8 hex digits of CRC-32(BODY SP MAC)
 *   key[seq+1] = SHA-256("meterd-seclog-v1 evolve" || key[seq])
 *
 * SHA-256 comes from OpenSSL (hardware-accelerated where the CPU allows);
 * HMAC is RFC 2104 over it, since the key changes with every record and a
 * keyed context could never be reused.  CRC-32 is zlib's, the one Python's
 * zlib.crc32 (and so the verifier) uses.
 */
#include "meterd_seal.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#define BLOCK 64

static const char EVOLVE[] = "meterd-seclog-v1 evolve";
static const char HEX[] = "0123456789abcdef";

static EVP_MD *sha256_md;

int mtr_seal_init(void) {
    if (sha256_md == NULL) {
        sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    }
    return sha256_md == NULL ? MTR_SEAL_E_CRYPTO : 0;
}

uint32_t mtr_crc32(const uint8_t *data, size_t len) {
    /* Frames are far below 4 GiB, but feed zlib in uInt-sized steps anyway. */
    uLong crc = crc32(0L, Z_NULL, 0);
    while (len > 0) {
        uInt step = len > 0x40000000u ? 0x40000000u : (uInt)len;
        crc = crc32(crc, data, step);
        data += step;
        len -= step;
    }
    return (uint32_t)crc;
}

static int sha256(EVP_MD_CTX *ctx, const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len,
                  uint8_t out[MTR_SEAL_DIGEST_BYTES]) {
    unsigned int len = 0;
    if (EVP_DigestInit_ex2(ctx, sha256_md, NULL) != 1 || EVP_DigestUpdate(ctx, a, a_len) != 1 ||
        (b_len && EVP_DigestUpdate(ctx, b, b_len) != 1) || EVP_DigestFinal_ex(ctx, out, &len) != 1 ||
        len != MTR_SEAL_DIGEST_BYTES) {
        return 0;
    }
    return 1;
}

static int hmac_sha256(EVP_MD_CTX *ctx, const uint8_t key[MTR_SEAL_KEY_BYTES], const uint8_t *msg,
                       size_t msg_len, uint8_t out[MTR_SEAL_DIGEST_BYTES]) {
    uint8_t pad[BLOCK];
    uint8_t inner[MTR_SEAL_DIGEST_BYTES];
    int ok;
    memset(pad, 0x36, sizeof pad);
    for (size_t i = 0; i < MTR_SEAL_KEY_BYTES; i++) {
        pad[i] ^= key[i];
    }
    ok = sha256(ctx, pad, sizeof pad, msg, msg_len, inner);
    for (size_t i = 0; i < BLOCK; i++) {
        pad[i] ^= 0x36 ^ 0x5c;
    }
    ok = ok && sha256(ctx, pad, sizeof pad, inner, sizeof inner, out);
    OPENSSL_cleanse(pad, sizeof pad);
    OPENSSL_cleanse(inner, sizeof inner);
    return ok;
}

static uint8_t *put(uint8_t *p, const void *src, size_t len) {
    memcpy(p, src, len);
    return p + len;
}

static uint8_t *put_hex(uint8_t *p, const uint8_t *src, size_t len) {
    for (size_t i = 0; i < len; i++) {
        *p++ = (uint8_t)HEX[src[i] >> 4];
        *p++ = (uint8_t)HEX[src[i] & 0xF];
    }
    return p;
}

static int printable(const uint8_t *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] > 0x7E) {
            return 0;
        }
    }
    return 1;
}

uint64_t mtr_seal_frame_size(uint64_t fields_len, uint64_t seq, uint32_t ts_len) {
    uint64_t digits = 1;
    for (uint64_t v = seq; v >= 10; v /= 10) {
        digits++;
    }
    /* "CRC " + {"v":1,"seq": + seq + ,"ts":" + ts + ", + fields + ,"prev":" + hex + "} + " " + MAC + LF */
    return 9 + 13 + digits + 7 + ts_len + 2 + fields_len + 9 + 64 + 2 + 1 + 64 + 1;
}

uint64_t mtr_seal_frames_size(uint64_t fields_len, uint64_t n, uint64_t first_seq, uint32_t ts_len) {
    if (n == 0) {
        return 0;
    }
    /* The seqs' digits, one step per digit count rather than per record. */
    uint64_t last = first_seq + n - 1;
    uint64_t digits = 0;
    uint64_t width = 1;
    uint64_t limit = 10; /* the smallest seq with more than width digits */
    while (first_seq >= limit && limit <= UINT64_MAX / 10) {
        width++;
        limit *= 10;
    }
    for (uint64_t seq = first_seq;;) {
        uint64_t upto = last < limit ? last : limit - 1;
        digits += (upto - seq + 1) * width;
        if (upto == last) {
            break;
        }
        seq = upto + 1;
        width++;
        limit = limit <= UINT64_MAX / 10 ? limit * 10 : UINT64_MAX;
    }
    return fields_len + n * (mtr_seal_frame_size(0, 0, ts_len) - 1) + digits;
}

int64_t mtr_seal(const uint8_t *fields, const uint32_t *lengths, uint32_t n, uint64_t seq, const uint8_t *ts,
                 uint32_t ts_len, uint8_t *prev, uint8_t *key, uint8_t *out, uint64_t out_cap, int patch_last) {
    if ((n && (fields == NULL || lengths == NULL)) || ts == NULL || ts_len == 0 || prev == NULL ||
        key == NULL || out == NULL) {
        return MTR_SEAL_E_ARGUMENT;
    }
    if (sha256_md == NULL) {
        return MTR_SEAL_E_CRYPTO;
    }
    /* The timestamp sits inside a JSON string: no quote or backslash either. */
    if (!printable(ts, ts_len) || memchr(ts, '"', ts_len) || memchr(ts, '\\', ts_len)) {
        return MTR_SEAL_E_BYTE;
    }
    uint64_t need = 0;
    size_t offset = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!printable(fields + offset, lengths[i])) {
            return MTR_SEAL_E_BYTE;
        }
        offset += lengths[i];
        need += (uint64_t)lengths[i] + ts_len + MTR_SEAL_FRAME_OVERHEAD;
    }
    if (need > out_cap) {
        return MTR_SEAL_E_SPACE;
    }
    if (patch_last) {
        const uint8_t *last = fields + offset - (n ? lengths[n - 1] : 0);
        uint32_t len = n ? lengths[n - 1] : 0;
        if (len < 2 * MTR_SEAL_DIGEST_BYTES + 3 || last[len - 1] != '}' || last[len - 2] != '"' ||
            last[len - 2 * MTR_SEAL_DIGEST_BYTES - 3] != '"') {
            return MTR_SEAL_E_PATCH;
        }
    }

    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return MTR_SEAL_E_CRYPTO;
    }
    uint8_t cur_prev[MTR_SEAL_DIGEST_BYTES];
    uint8_t cur_key[MTR_SEAL_KEY_BYTES];
    uint8_t evolve_in[sizeof EVOLVE - 1 + MTR_SEAL_KEY_BYTES];
    uint8_t digest[MTR_SEAL_DIGEST_BYTES];
    uint8_t mac[MTR_SEAL_DIGEST_BYTES];
    char seq_text[24];
    int ok = 1;
    uint8_t *p = out;
    memcpy(cur_prev, prev, sizeof cur_prev);
    memcpy(cur_key, key, sizeof cur_key);
    memcpy(evolve_in, EVOLVE, sizeof EVOLVE - 1);
    offset = 0;
    for (uint32_t i = 0; i < n && ok; i++) {
        uint8_t *frame = p;
        uint8_t *body = frame + 9; /* after "CRC " */
        int seq_len = snprintf(seq_text, sizeof seq_text, "%llu", (unsigned long long)(seq + 1 + i));
        p = body;
        p = put(p, "{\"v\":1,\"seq\":", 13);
        p = put(p, seq_text, (size_t)seq_len);
        p = put(p, ",\"ts\":\"", 7);
        p = put(p, ts, ts_len);
        p = put(p, "\",", 2);
        p = put(p, fields + offset, lengths[i]);
        if (patch_last && i == n - 1) {
            put_hex(p - 2 * MTR_SEAL_DIGEST_BYTES - 2, cur_prev, sizeof cur_prev);
        }
        p = put(p, ",\"prev\":\"", 9);
        p = put_hex(p, cur_prev, sizeof cur_prev);
        p = put(p, "\"}", 2);
        size_t body_len = (size_t)(p - body);
        offset += lengths[i];

        ok = sha256(ctx, body, body_len, NULL, 0, digest) && hmac_sha256(ctx, cur_key, digest, sizeof digest, mac);
        *p++ = ' ';
        p = put_hex(p, mac, sizeof mac);
        uint32_t crc = mtr_crc32(body, (size_t)(p - body));
        for (int k = 7; k >= 0; k--) {
            frame[7 - k] = (uint8_t)HEX[(crc >> (4 * k)) & 0xF];
        }
        frame[8] = ' ';
        *p++ = '\n';

        memcpy(cur_prev, digest, sizeof digest);
        memcpy(evolve_in + sizeof EVOLVE - 1, cur_key, sizeof cur_key);
        ok = ok && sha256(ctx, evolve_in, sizeof evolve_in, NULL, 0, cur_key);
    }
    EVP_MD_CTX_free(ctx);
    if (ok) {
        memcpy(prev, cur_prev, sizeof cur_prev);
        memcpy(key, cur_key, sizeof cur_key);
    }
    OPENSSL_cleanse(cur_key, sizeof cur_key);
    OPENSSL_cleanse(evolve_in, sizeof evolve_in);
    OPENSSL_cleanse(mac, sizeof mac);
    return ok ? (int64_t)(p - out) : MTR_SEAL_E_CRYPTO;
}
