"""Directory names as the meter compares them: distinguished names and login names.

Pure and free of ldap3, so the policy side can match ``directory_group``
values against what a backend returned without loading an LDAP client.
"""

from __future__ import annotations

import re

#: The longest login name a directory login accepts.
MAX_LOGIN_NAME = 256
_SPLIT = re.compile(r"(?<!\\),")


def normalise_group(name: str) -> str:
    """Return a group name in the form the mapping compares.

    A DN (``CN=GridVis-Admin, OU=Groups,DC=utility,DC=example``) loses the
    spaces around its separators; every name is compared case-insensitively
    (as LDAP and Active Directory compare these attributes).
    """
    if "=" not in name:
        return name.strip().casefold()
    parts = []
    for rdn in _SPLIT.split(name):
        attr, _, value = rdn.partition("=")
        parts.append(f"{attr.strip().casefold()}={value.strip().casefold()}")
    return ",".join(parts)


def first_cn(dn: str) -> str | None:
    """The value of a DN's leading ``CN=`` component (a group's short name), or None."""
    first = _SPLIT.split(dn, maxsplit=1)[0]
    attr, sep, value = first.partition("=")
    if sep and attr.strip().casefold() == "cn":
        return value.strip().replace("\\,", ",")
    return None


def login_name_problem(name: str) -> str:
    """Why ``name`` cannot be a directory login name ("" when it can)."""
    if not name:
        return "empty user name"
    if len(name) > MAX_LOGIN_NAME:
        return f"user name longer than {MAX_LOGIN_NAME} characters"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "control character in user name"
    return ""
