"""What meterd keeps below its state directory under fixed names: no key moves them.

Each name is declared once here; the daemon's parts take their names from
these declarations, and the README's *Paths* table lists :data:`FIXED`
(rendered by :mod:`meterd.config_reference`) beside the configurable paths.
A leaf.
"""

from __future__ import annotations

from meterd.record import record


@record
class StatePath:
    """One fixed name below ``state_dir``.

    Attributes:
        name: The file's or directory's name.
        doc: What it holds, for the README.
        directory: Whether it is a directory.
    """

    name: str
    doc: str
    directory: bool = False

    @property
    def shown(self) -> str:
        """The name as the README shows it (a directory ends in ``/``)."""
        return f"{self.name}/" if self.directory else self.name


POLICY_STORE = StatePath("policy", "the policy store", directory=True)
METER_STATE = StatePath("meter", "the meter's state", directory=True)
FILE_AREA = StatePath("files", "the meter's file area", directory=True)
CREDENTIALS = StatePath("credentials.json", "the credential store: password hashes, panel PINs, SSH keys")
INITIAL_LOG_KEY = StatePath("security-log-initial-key", "the security log's initial key")
DIRECTORY_CACHE = StatePath("directory-cache.json", "the directory's offline cache")
DEMO_ACCOUNTS = StatePath("demo-accounts.toml", "with `demo_accounts`: the demo accounts")
DEMO_CREDENTIALS = StatePath("demo-credentials.txt", "with `demo_accounts`: their credentials in clear")
DEMO_KEYS = StatePath("demo-keys", "with `demo_accounts`: their SSH keys", directory=True)
DEMO_PKI = StatePath("demo-pki", "with `demo_accounts`: the demo PKI", directory=True)

#: Every fixed name, in the order the README lists them.
FIXED: tuple[StatePath, ...] = (
    POLICY_STORE,
    METER_STATE,
    FILE_AREA,
    CREDENTIALS,
    INITIAL_LOG_KEY,
    DIRECTORY_CACHE,
    DEMO_ACCOUNTS,
    DEMO_CREDENTIALS,
    DEMO_KEYS,
    DEMO_PKI,
)
