"""The firmware image format the meter accepts, and its check.

An image is a fixed header followed by the payload::

    offset  size  field
    0       8     magic, b"MTRFWIMG"
    8       16    version, ASCII "major.minor.patch", NUL-padded
    24      8     payload length, unsigned big-endian
    32      32    SHA-256 of the payload
    64      n     payload

The check rejects anything else: a wrong magic, a malformed version, a length
that does not match, or a digest that does not.  It proves integrity, not
origin; signed images are a firmware binding's business.
"""

from __future__ import annotations

import hashlib
import re
import struct

from meterd.meter.errors import FirmwareImageError
from meterd.meter.model import VERSION_PATTERN
from meterd.record import record

MAGIC = b"MTRFWIMG"
HEADER = struct.Struct(">8s16sQ32s")
MAX_IMAGE_BYTES = 32 * 1024 * 1024
# An image's name becomes a file name in the firmware area: one plain path
# component, so it can never climb out of it.
IMAGE_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@record
class CheckedImage:
    """A firmware image that passed :func:`check_image`.

    Attributes:
        version: The version the header declares.
        sha256: Hex SHA-256 of the whole image.
        size_bytes: Size of the whole image.

    """

    version: str
    sha256: str
    size_bytes: int


def build_image(version: str, payload: bytes) -> bytes:
    """Return an image in the accepted format (for tools and tests).

    Raises:
        FirmwareImageError: The version is malformed or the payload empty.

    """
    if not re.fullmatch(VERSION_PATTERN, version):
        raise FirmwareImageError(f"malformed firmware version {version!r}")
    if not payload:
        raise FirmwareImageError("empty firmware payload")
    header = HEADER.pack(MAGIC, version.encode("ascii"), len(payload), hashlib.sha256(payload).digest())
    return header + payload


def check_name(name: str) -> None:
    """Require an image name that is a single, plain file name.

    Raises:
        FirmwareImageError: The name could be a path or is otherwise unsafe.

    """
    if not IMAGE_NAME_PATTERN.fullmatch(name) or ".." in name:
        raise FirmwareImageError(
            f"bad firmware image name {name!r}: use letters, digits, '.', '_' and '-' only"
        )


def check_image(image: bytes) -> CheckedImage:
    """Check an image's header and payload digest.

    Returns:
        The image's declared version and its whole-file digest and size.

    Raises:
        FirmwareImageError: The image is too short, too large, has a wrong
            magic or version, a length mismatch, or a digest mismatch.

    """
    if len(image) > MAX_IMAGE_BYTES:
        raise FirmwareImageError(f"firmware image larger than {MAX_IMAGE_BYTES} bytes")
    if len(image) <= HEADER.size:
        raise FirmwareImageError("not a firmware image: too short")
    magic, raw_version, length, digest = HEADER.unpack_from(image)
    if magic != MAGIC:
        raise FirmwareImageError("not a firmware image: bad magic")
    version = raw_version.rstrip(b"\0").decode("ascii", errors="replace")
    if not re.fullmatch(VERSION_PATTERN, version):
        raise FirmwareImageError(f"firmware image has a malformed version {version!r}")
    payload = image[HEADER.size :]
    if length != len(payload):
        raise FirmwareImageError(
            f"firmware image truncated or padded: header says {length} bytes, got {len(payload)}"
        )
    if hashlib.sha256(payload).digest() != digest:
        raise FirmwareImageError("firmware image is corrupt: payload digest mismatch")
    return CheckedImage(version=version, sha256=hashlib.sha256(image).hexdigest(), size_bytes=len(image))
