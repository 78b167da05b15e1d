"""Which records are about unauthenticated parties.

The question is answered from the encoded bytes (a record's caller fields,
or a whole frame read back at open), so the store can account for them per
segment without decoding JSON on the write path.  The first occurrence of each
key is the record's own field: principal and source are JSON strings whose
quotes are escaped, so ``,"pk":"`` cannot occur inside them, and ``"ev"``
comes before any of them.  (Which records may use a full log's reserve is the
guard's decision, passed with the append, never read from the bytes.)

* **Unauthenticated**: the anonymous principal, a name that is no principal of
  the policy (``unknown``), every failed login and the lockouts they cause.  They may hold only
  ``unauthenticated_share`` of the log (see :class:`~meterd.seclog.config.LogConfig`).
"""

from __future__ import annotations

_EVENT = b'"ev":"'
_KIND = b',"pk":"'
_FAILED_LOGIN_EVENTS = (b'login_failure"', b'account_locked"')
_UNAUTHENTICATED_KINDS = (b'anonymous"', b'unknown"')
#: Substrings at least one of which every unauthenticated record holds: a cheap test for a whole group.
MARKERS = (b'"pk":"anonymous"', b'"pk":"unknown"', b'"ev":"login_failure"', b'"ev":"account_locked"')


def unauthenticated(data: bytes) -> bool:
    """True for a record (its encoded fields or its whole frame) about an unauthenticated party."""
    at = data.find(_EVENT)
    if at >= 0 and data.startswith(_FAILED_LOGIN_EVENTS, at + len(_EVENT)):
        return True
    at = data.find(_KIND)
    return at >= 0 and data.startswith(_UNAUTHENTICATED_KINDS, at + len(_KIND))


def unauthenticated_bytes(frames: bytes) -> int:
    """Bytes of the unauthenticated records among newline-terminated ``frames`` (a segment's content)."""
    if not any(marker in frames for marker in MARKERS):
        return 0
    return sum(len(line) + 1 for line in frames.split(b"\n") if line and unauthenticated(line))
