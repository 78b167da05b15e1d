"""cffi (API mode) build script for the security-log sealer, ``meterd._seal``.

It only wires ``meterd_seal.h``/``meterd_seal.c`` to cffi, OpenSSL's
libcrypto and zlib; the declarations below mirror the header, and cffi checks them
against it at compile time.
"""

from __future__ import annotations

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

int mtr_seal_init(void);
int64_t mtr_seal(const uint8_t *fields, const uint32_t *lengths, uint32_t n, uint64_t seq, const uint8_t *ts,
                 uint32_t ts_len, uint8_t *prev, uint8_t *key, uint8_t *out, uint64_t out_cap);
uint32_t mtr_crc32(const uint8_t *data, size_t len);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "meterd._seal",
    '#include "meterd_seal.h"',
    # Relative to the project root, where setuptools runs the build (see build_evaluator.py).
    sources=["native/meterd_seal.c"],
    include_dirs=["native"],
    libraries=["crypto", "z"],
    extra_compile_args=["-O2", "-Wall", "-Wextra"],
    py_limited_api=False,
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(NATIVE_DIR.parent), verbose=True)
