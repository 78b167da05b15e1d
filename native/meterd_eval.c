/*
 * meterd_eval.c - table checking and decisions of the native evaluator.
 *
 * See meterd_eval.h for the table format and the decision rules.  No
 * allocation, no I/O and no mutable globals: the only static data is the
 * constant CRC table.  Every multi-byte field is read with load_u32/load_u16,
 * so the code does not depend on the host's byte order or on the alignment
 * of the caller's buffer.
 */
#include "meterd_eval.h"

/* Distinguishes a handle filled by a successful open from a cleared or
 * uninitialised one. */
#define ACCEPTED_MARK 0x4D545254u

#define ALL_PERMISSIONS_MASK ((1u << MTR_N_PERMISSIONS) - 1u)

static const uint32_t crc_table[256] = {
    0x00000000u, 0x77073096u, 0xEE0E612Cu, 0x990951BAu, 0x076DC419u, 0x706AF48Fu,
    0xE963A535u, 0x9E6495A3u, 0x0EDB8832u, 0x79DCB8A4u, 0xE0D5E91Eu, 0x97D2D988u,
    0x09B64C2Bu, 0x7EB17CBDu, 0xE7B82D07u, 0x90BF1D91u, 0x1DB71064u, 0x6AB020F2u,
    0xF3B97148u, 0x84BE41DEu, 0x1ADAD47Du, 0x6DDDE4EBu, 0xF4D4B551u, 0x83D385C7u,
    0x136C9856u, 0x646BA8C0u, 0xFD62F97Au, 0x8A65C9ECu, 0x14015C4Fu, 0x63066CD9u,
    0xFA0F3D63u, 0x8D080DF5u, 0x3B6E20C8u, 0x4C69105Eu, 0xD56041E4u, 0xA2677172u,
    0x3C03E4D1u, 0x4B04D447u, 0xD20D85FDu, 0xA50AB56Bu, 0x35B5A8FAu, 0x42B2986Cu,
    0xDBBBC9D6u, 0xACBCF940u, 0x32D86CE3u, 0x45DF5C75u, 0xDCD60DCFu, 0xABD13D59u,
    0x26D930ACu, 0x51DE003Au, 0xC8D75180u, 0xBFD06116u, 0x21B4F4B5u, 0x56B3C423u,
    0xCFBA9599u, 0xB8BDA50Fu, 0x2802B89Eu, 0x5F058808u, 0xC60CD9B2u, 0xB10BE924u,
    0x2F6F7C87u, 0x58684C11u, 0xC1611DABu, 0xB6662D3Du, 0x76DC4190u, 0x01DB7106u,
    0x98D220BCu, 0xEFD5102Au, 0x71B18589u, 0x06B6B51Fu, 0x9FBFE4A5u, 0xE8B8D433u,
    0x7807C9A2u, 0x0F00F934u, 0x9609A88Eu, 0xE10E9818u, 0x7F6A0DBBu, 0x086D3D2Du,
    0x91646C97u, 0xE6635C01u, 0x6B6B51F4u, 0x1C6C6162u, 0x856530D8u, 0xF262004Eu,
    0x6C0695EDu, 0x1B01A57Bu, 0x8208F4C1u, 0xF50FC457u, 0x65B0D9C6u, 0x12B7E950u,
    0x8BBEB8EAu, 0xFCB9887Cu, 0x62DD1DDFu, 0x15DA2D49u, 0x8CD37CF3u, 0xFBD44C65u,
    0x4DB26158u, 0x3AB551CEu, 0xA3BC0074u, 0xD4BB30E2u, 0x4ADFA541u, 0x3DD895D7u,
    0xA4D1C46Du, 0xD3D6F4FBu, 0x4369E96Au, 0x346ED9FCu, 0xAD678846u, 0xDA60B8D0u,
    0x44042D73u, 0x33031DE5u, 0xAA0A4C5Fu, 0xDD0D7CC9u, 0x5005713Cu, 0x270241AAu,
    0xBE0B1010u, 0xC90C2086u, 0x5768B525u, 0x206F85B3u, 0xB966D409u, 0xCE61E49Fu,
    0x5EDEF90Eu, 0x29D9C998u, 0xB0D09822u, 0xC7D7A8B4u, 0x59B33D17u, 0x2EB40D81u,
    0xB7BD5C3Bu, 0xC0BA6CADu, 0xEDB88320u, 0x9ABFB3B6u, 0x03B6E20Cu, 0x74B1D29Au,
    0xEAD54739u, 0x9DD277AFu, 0x04DB2615u, 0x73DC1683u, 0xE3630B12u, 0x94643B84u,
    0x0D6D6A3Eu, 0x7A6A5AA8u, 0xE40ECF0Bu, 0x9309FF9Du, 0x0A00AE27u, 0x7D079EB1u,
    0xF00F9344u, 0x8708A3D2u, 0x1E01F268u, 0x6906C2FEu, 0xF762575Du, 0x806567CBu,
    0x196C3671u, 0x6E6B06E7u, 0xFED41B76u, 0x89D32BE0u, 0x10DA7A5Au, 0x67DD4ACCu,
    0xF9B9DF6Fu, 0x8EBEEFF9u, 0x17B7BE43u, 0x60B08ED5u, 0xD6D6A3E8u, 0xA1D1937Eu,
    0x38D8C2C4u, 0x4FDFF252u, 0xD1BB67F1u, 0xA6BC5767u, 0x3FB506DDu, 0x48B2364Bu,
    0xD80D2BDAu, 0xAF0A1B4Cu, 0x36034AF6u, 0x41047A60u, 0xDF60EFC3u, 0xA867DF55u,
    0x316E8EEFu, 0x4669BE79u, 0xCB61B38Cu, 0xBC66831Au, 0x256FD2A0u, 0x5268E236u,
    0xCC0C7795u, 0xBB0B4703u, 0x220216B9u, 0x5505262Fu, 0xC5BA3BBEu, 0xB2BD0B28u,
    0x2BB45A92u, 0x5CB36A04u, 0xC2D7FFA7u, 0xB5D0CF31u, 0x2CD99E8Bu, 0x5BDEAE1Du,
    0x9B64C2B0u, 0xEC63F226u, 0x756AA39Cu, 0x026D930Au, 0x9C0906A9u, 0xEB0E363Fu,
    0x72076785u, 0x05005713u, 0x95BF4A82u, 0xE2B87A14u, 0x7BB12BAEu, 0x0CB61B38u,
    0x92D28E9Bu, 0xE5D5BE0Du, 0x7CDCEFB7u, 0x0BDBDF21u, 0x86D3D2D4u, 0xF1D4E242u,
    0x68DDB3F8u, 0x1FDA836Eu, 0x81BE16CDu, 0xF6B9265Bu, 0x6FB077E1u, 0x18B74777u,
    0x88085AE6u, 0xFF0F6A70u, 0x66063BCAu, 0x11010B5Cu, 0x8F659EFFu, 0xF862AE69u,
    0x616BFFD3u, 0x166CCF45u, 0xA00AE278u, 0xD70DD2EEu, 0x4E048354u, 0x3903B3C2u,
    0xA7672661u, 0xD06016F7u, 0x4969474Du, 0x3E6E77DBu, 0xAED16A4Au, 0xD9D65ADCu,
    0x40DF0B66u, 0x37D83BF0u, 0xA9BCAE53u, 0xDEBB9EC5u, 0x47B2CF7Fu, 0x30B5FFE9u,
    0xBDBDF21Cu, 0xCABAC28Au, 0x53B39330u, 0x24B4A3A6u, 0xBAD03605u, 0xCDD70693u,
    0x54DE5729u, 0x23D967BFu, 0xB3667A2Eu, 0xC4614AB8u, 0x5D681B02u, 0x2A6F2B94u,
    0xB40BBE37u, 0xC30C8EA1u, 0x5A05DF1Bu, 0x2D02EF8Du
};

static uint32_t load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint32_t load_u16(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8);
}

static uint32_t crc32_ieee(const uint8_t *p, size_t len)
{
    uint32_t crc = 0xFFFFFFFFu;
    size_t i;

    for (i = 0; i < len; i++) {
        crc = crc_table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
    }
    return crc ^ 0xFFFFFFFFu;
}

static void clear_table(mtr_table *table)
{
    table->policy_version = 0;
    table->n_channels = 0;
    table->n_nodes = 0;
    table->n_principals = 0;
    table->n_grants = 0;
    table->accepted = 0;
    table->channel_caps = NULL;
    table->node_parent = NULL;
    table->principal_flags = NULL;
    table->grant_start = NULL;
    table->grants = NULL;
}

/* Checks the header fields and sizes; on success fills the counts. */
static int check_header(mtr_table *t, const uint8_t *b, size_t len)
{
    uint64_t expected;

    if (len < MTR_HEADER_SIZE) {
        return MTR_E_SHORT;
    }
    if (b[0] != 'M' || b[1] != 'T' || b[2] != 'R' || b[3] != 'T') {
        return MTR_E_MAGIC;
    }
    if (load_u16(b + 4) != MTR_FORMAT_VERSION) {
        return MTR_E_VERSION;
    }
    if (load_u16(b + 6) != MTR_HEADER_SIZE) {
        return MTR_E_HEADER_SIZE;
    }
    t->policy_version = load_u32(b + 12);
    t->n_channels = load_u32(b + 16);
    t->n_nodes = load_u32(b + 20);
    t->n_principals = load_u32(b + 24);
    t->n_grants = load_u32(b + 28);
    if (t->n_channels < 1 || t->n_channels > MTR_MAX_CHANNELS || t->n_nodes < 1 ||
        t->n_nodes > MTR_MAX_NODES || t->n_principals > MTR_MAX_PRINCIPALS ||
        t->n_grants > MTR_MAX_GRANTS) {
        return MTR_E_COUNT;
    }
    /* The bounds above keep this far below 2^32, so it fits total_size. */
    expected = (uint64_t)MTR_HEADER_SIZE + 4u * (uint64_t)t->n_channels + 4u * (uint64_t)t->n_nodes +
               4u * (uint64_t)t->n_principals + 4u * ((uint64_t)t->n_principals + 1u) +
               8u * (uint64_t)t->n_grants + 4u;
    if ((uint64_t)load_u32(b + 8) != expected || (uint64_t)len != expected) {
        return MTR_E_SIZE;
    }
    return MTR_OK;
}

/* Checks every section; the sizes are already known to be consistent. */
static int check_sections(const mtr_table *t)
{
    uint32_t i;
    uint32_t previous;

    for (i = 0; i < t->n_channels; i++) {
        if (load_u32(t->channel_caps + 4u * i) & ~ALL_PERMISSIONS_MASK) {
            return MTR_E_CHANNEL_CAP;
        }
    }
    if (load_u32(t->node_parent) != MTR_NO_PARENT) {
        return MTR_E_PARENT;
    }
    for (i = 1; i < t->n_nodes; i++) {
        if (load_u32(t->node_parent + 4u * i) >= i) {
            return MTR_E_PARENT;
        }
    }
    for (i = 0; i < t->n_principals; i++) {
        if (load_u32(t->principal_flags + 4u * i) & ~1u) {
            return MTR_E_FLAGS;
        }
    }
    if (load_u32(t->grant_start) != 0) {
        return MTR_E_GRANT_START;
    }
    previous = 0;
    for (i = 1; i <= t->n_principals; i++) {
        uint32_t start = load_u32(t->grant_start + 4u * i);
        if (start < previous) {
            return MTR_E_GRANT_START;
        }
        previous = start;
    }
    if (previous != t->n_grants) {
        return MTR_E_GRANT_START;
    }
    for (i = 0; i < t->n_grants; i++) {
        if (load_u32(t->grants + 8u * i) >= t->n_nodes) {
            return MTR_E_GRANT_NODE;
        }
        if (load_u32(t->grants + 8u * i + 4u) & ~ALL_PERMISSIONS_MASK) {
            return MTR_E_GRANT_MASK;
        }
    }
    return MTR_OK;
}

int mtr_table_open(mtr_table *table, const void *buf, size_t len)
{
    const uint8_t *b = (const uint8_t *)buf;
    mtr_table t;
    int status;

    if (table == NULL) {
        return MTR_E_ARGUMENT;
    }
    clear_table(table);
    if (b == NULL) {
        return MTR_E_ARGUMENT;
    }
    clear_table(&t);
    status = check_header(&t, b, len);
    if (status != MTR_OK) {
        return status;
    }
    if (crc32_ieee(b, len - 4u) != load_u32(b + len - 4u)) {
        return MTR_E_CHECKSUM;
    }
    t.channel_caps = b + MTR_HEADER_SIZE;
    t.node_parent = t.channel_caps + 4u * (size_t)t.n_channels;
    t.principal_flags = t.node_parent + 4u * (size_t)t.n_nodes;
    t.grant_start = t.principal_flags + 4u * (size_t)t.n_principals;
    t.grants = t.grant_start + 4u * ((size_t)t.n_principals + 1u);
    status = check_sections(&t);
    if (status != MTR_OK) {
        return status;
    }
    t.accepted = ACCEPTED_MARK;
    *table = t;
    return MTR_OK;
}

/* True when `anchor` is `node` or one of its ancestors.  Parents are
 * strictly smaller than their children, so the walk can stop as soon as it
 * passes below the anchor; the extra guard keeps the walk bounded even if
 * the buffer were changed after it was checked. */
static int on_path(const uint8_t *node_parent, uint32_t node, uint32_t anchor)
{
    uint32_t cur = node;

    while (cur > anchor) {
        uint32_t parent = load_u32(node_parent + 4u * (size_t)cur);
        if (parent >= cur) {
            return 0;
        }
        cur = parent;
    }
    return cur == anchor;
}

uint8_t mtr_decide(const mtr_table *table, uint32_t principal, uint32_t permission, uint32_t node,
                   uint32_t channel)
{
    const uint8_t *grant;
    const uint8_t *end;
    uint32_t bit;
    int granted = 0;

    if (table == NULL || table->accepted != ACCEPTED_MARK) {
        return MTR_DENY_BAD_TABLE;
    }
    if (permission >= MTR_N_PERMISSIONS || channel >= table->n_channels || node >= table->n_nodes) {
        return MTR_DENY_BAD_REQUEST;
    }
    if (principal >= table->n_principals) {
        return MTR_DENY_UNKNOWN_PRINCIPAL;
    }
    if (!(load_u32(table->principal_flags + 4u * (size_t)principal) & 1u)) {
        return MTR_DENY_DISABLED;
    }
    bit = 1u << permission;
    grant = table->grants + 8u * (size_t)load_u32(table->grant_start + 4u * (size_t)principal);
    end = table->grants + 8u * (size_t)load_u32(table->grant_start + 4u * ((size_t)principal + 1u));
    for (; grant < end; grant += 8) {
        if (!(load_u32(grant + 4) & bit)) {
            continue;
        }
        granted = 1;
        if (on_path(table->node_parent, node, load_u32(grant))) {
            if (!(load_u32(table->channel_caps + 4u * (size_t)channel) & bit)) {
                return MTR_DENY_CHANNEL_CAP;
            }
            return MTR_ALLOW;
        }
    }
    return granted ? MTR_DENY_OUT_OF_SCOPE : MTR_DENY_NOT_GRANTED;
}

int mtr_decide_batch(const mtr_table *table, const mtr_request *requests, size_t n, uint8_t *out)
{
    size_t i;

    if (n == 0) {
        return MTR_OK;
    }
    if (out == NULL) {
        return MTR_E_ARGUMENT;
    }
    if (requests == NULL || table == NULL || table->accepted != ACCEPTED_MARK) {
        for (i = 0; i < n; i++) {
            out[i] = MTR_DENY_BAD_TABLE;
        }
        return MTR_E_ARGUMENT;
    }
    for (i = 0; i < n; i++) {
        out[i] = mtr_decide(table, requests[i].principal, requests[i].permission, requests[i].node,
                            requests[i].channel);
    }
    return MTR_OK;
}

const char *mtr_strerror(int status)
{
    switch (status) {
    case MTR_OK:
        return "ok";
    case MTR_E_ARGUMENT:
        return "missing argument or unchecked table";
    case MTR_E_SHORT:
        return "shorter than the header";
    case MTR_E_MAGIC:
        return "bad magic";
    case MTR_E_VERSION:
        return "unsupported format version";
    case MTR_E_HEADER_SIZE:
        return "bad header size";
    case MTR_E_COUNT:
        return "count out of range";
    case MTR_E_SIZE:
        return "size mismatch";
    case MTR_E_CHECKSUM:
        return "checksum mismatch";
    case MTR_E_CHANNEL_CAP:
        return "channel cap has an unknown permission bit";
    case MTR_E_PARENT:
        return "scope tree parent out of order";
    case MTR_E_FLAGS:
        return "principal has reserved flag bits set";
    case MTR_E_GRANT_START:
        return "grant offsets are inconsistent";
    case MTR_E_GRANT_NODE:
        return "grant anchored at a missing node";
    case MTR_E_GRANT_MASK:
        return "grant mask has an unknown permission bit";
    default:
        return "unknown status";
    }
}
