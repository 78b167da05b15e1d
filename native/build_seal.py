"""cffi (API mode) build script for the security log's native part, ``meterd._seal``.

It only wires the sealer (``meterd_seal.h``/``.c``) and the syncer that
seals, writes and syncs in its own thread (``meterd_sync.h``/``.c``) to cffi,
OpenSSL's libcrypto, zlib and pthreads; the declarations below mirror the
headers, and cffi checks them against them at compile time.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# cffi ships no type information; the ignore stays harmless once stubs exist.
from cffi import FFI  # type: ignore[import-untyped,unused-ignore]

NATIVE_DIR = Path(__file__).resolve().parent

CDEF = """
#define MTR_SEAL_FORMAT_VERSION ...
#define MTR_SEAL_KEY_BYTES ...
#define MTR_SEAL_DIGEST_BYTES ...
#define MTR_SEAL_FRAME_OVERHEAD ...
#define MTR_SEAL_E_ARGUMENT ...
#define MTR_SEAL_E_BYTE ...
#define MTR_SEAL_E_SPACE ...
#define MTR_SEAL_E_CRYPTO ...
#define MTR_SEAL_E_PATCH ...

int mtr_seal_init(void);
int64_t mtr_seal(const uint8_t *fields, const uint32_t *lengths, uint32_t n, uint64_t seq,
                 const uint8_t *ts, uint32_t ts_len, uint8_t *prev, uint8_t *key, uint8_t *out,
                 uint64_t out_cap, int patch_last);
uint64_t mtr_seal_frame_size(uint64_t fields_len, uint64_t seq, uint32_t ts_len);
uint64_t mtr_seal_frames_size(uint64_t fields_len, uint64_t n, uint64_t first_seq, uint32_t ts_len);
uint32_t mtr_crc32(const uint8_t *data, size_t len);
void mtr_key_pack(uint8_t *slot, uint64_t seq_next, const uint8_t *key);
int mtr_key_unpack(const uint8_t *slot, uint64_t *seq_next, uint8_t *key);

#define MTR_SYNC_KEY_BYTES ...
#define MTR_SYNC_KEY_SLOT ...
#define MTR_SYNC_MAX_SUBSCRIBERS ...
#define MTR_SYNC_LATENCIES ...
#define MTR_SYNC_E_TIMEOUT ...
#define MTR_SYNC_E_CLOSED ...
#define MTR_SYNC_E_ARGUMENT ...
#define MTR_SYNC_E_SYSTEM ...
#define MTR_SYNC_E_SEAL ...
#define MTR_SYNC_FAULT_NONE ...
#define MTR_SYNC_FAULT_FAIL ...
#define MTR_SYNC_FAULT_STALL ...
#define MTR_SYNC_FAULT_DELAY ...
#define MTR_SYNC_FAULT_TEAR ...
#define MTR_SYNC_DIGEST_BYTES ...

typedef struct mtr_syncer mtr_syncer;
mtr_syncer *mtr_syncer_start(int segment_fd, int key_fd, int key_slot, uint64_t seq, const uint8_t *prev,
                             const uint8_t *key);
int mtr_syncer_submit(mtr_syncer *s, const uint8_t *records, uint64_t records_len, uint32_t n,
                      const uint8_t *ts, uint32_t ts_len, int new_segment_fd, int patch_last);
uint64_t mtr_syncer_submitted(mtr_syncer *s);
int mtr_syncer_wait(mtr_syncer *s, uint64_t seq, int64_t timeout_ns);
uint64_t mtr_syncer_durable(mtr_syncer *s);
int mtr_syncer_failure(mtr_syncer *s);
int mtr_syncer_subscribe(mtr_syncer *s, int fd);
void mtr_syncer_unsubscribe(mtr_syncer *s, int fd);
void mtr_syncer_notify(mtr_syncer *s);
uint32_t mtr_syncer_latencies(mtr_syncer *s, double *out, uint32_t cap);
int mtr_syncer_stop(mtr_syncer *s);
void mtr_syncer_free(mtr_syncer *s);
"""
#: Only in the test build: the fault injection the failure and crash tests use.
TEST_CDEF = """
void mtr_syncer_set_fault(mtr_syncer *s, int fault, int64_t value);
"""


def builder(*, test: bool = False) -> FFI:
    """The cffi builder of ``meterd._seal``, or with ``test`` of ``meterd._seal_faults``.

    The test build is the same code compiled with ``MTR_SYNC_FAULTS``, which
    adds the storage fault injection; it is built for the test suite only
    (``make`` builds it in place beside the package, never into a wheel).
    """
    ffi = FFI()
    ffi.cdef(CDEF + (TEST_CDEF if test else ""))
    ffi.set_source(
        "meterd._seal_faults" if test else "meterd._seal",
        '#include "meterd_seal.h"\n#include "meterd_sync.h"',
        # Relative to the project root, where setuptools runs the build (see build_evaluator.py).
        sources=["native/meterd_seal.c", "native/meterd_sync.c"],
        include_dirs=["native"],
        define_macros=[("MTR_SYNC_FAULTS", "1")] if test else [],
        libraries=["crypto", "z"],
        extra_compile_args=["-O2", "-Wall", "-Wextra", "-pthread"],
        extra_link_args=["-pthread"],
        py_limited_api=False,
    )
    return ffi


ffibuilder = builder()


def build_test_module(root: Path) -> Path:
    """Compile ``meterd._seal_faults`` into ``root/meterd`` (from a scratch directory under
    ``root/build``, so setuptools does not read the project's configuration); return its path."""
    scratch = root / "build" / "seal-faults"
    scratch.mkdir(parents=True, exist_ok=True)
    for name in ("native",):
        link = scratch / name
        if not link.exists():
            link.symlink_to(root / name)
    built = Path(builder(test=True).compile(tmpdir=str(scratch)))
    target = root / "meterd" / built.name
    shutil.copyfile(built, target)
    return target


if __name__ == "__main__":
    if sys.argv[1:] == ["--test-build"]:
        print(build_test_module(NATIVE_DIR.parent))
    else:
        ffibuilder.compile(tmpdir=str(NATIVE_DIR.parent), verbose=True)
