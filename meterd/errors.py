"""The one exception root of meterd and its families.

Every error meterd raises derives from :class:`MeterdError`.  Each area has a
family so callers can catch what they can handle (a channel catches
:class:`ChannelError`, the daemon refuses to start on :class:`ConfigError`)
and let the rest reach the fail-closed handler.  Errors carry structured
fields so that messages and security-log records can name the key path, the
permission or the channel without parsing strings.
"""

from __future__ import annotations


class MeterdError(Exception):
    """Root of every error meterd raises."""


class ConfigError(MeterdError):
    """A configuration or policy file is unreadable or invalid.

    Attributes:
        source: The file (or other origin) the bad input came from.
        key_path: Dotted TOML key path of the offending value, e.g.
            ``roles.operator.permissions[2]``; empty when the whole file is bad.
        suggestion: A did-you-mean hint, or empty.

    """

    def __init__(self, message: str, *, source: str = "", key_path: str = "", suggestion: str = "") -> None:
        self.message = message
        self.source = source
        self.key_path = key_path
        self.suggestion = suggestion
        super().__init__(self.render())

    def render(self) -> str:
        """Return the one-line message a user sees: ``file: key.path: what; hint``."""
        parts = [p for p in (self.source, self.key_path) if p]
        text = ": ".join([*parts, self.message])
        if self.suggestion:
            text += f'; did you mean "{self.suggestion}"?'
        return text


class ConfigValidationError(ConfigError):
    """Several configuration errors found in one pass, reported together.

    Attributes:
        errors: Every individual error, in file order.
    """

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = list(errors)
        first = errors[0] if errors else ConfigError("invalid configuration")
        super().__init__(
            first.message, source=first.source, key_path=first.key_path, suggestion=first.suggestion
        )

    def render(self) -> str:  # noqa: D102 - documented on the base class
        return "\n".join(e.render() for e in self.errors)


class PolicyError(ConfigError):
    """The policy (roles, principals, scopes, constraints) is invalid."""


class PolicyValidationError(ConfigValidationError, PolicyError):
    """Several policy errors found in one pass, reported together."""


class EvaluatorError(MeterdError):
    """The compiled policy table or the native evaluator refused to work.

    Raised for a corrupt, truncated or wrong-version table; the guard turns it
    into a deny.
    """


class CredentialError(MeterdError):
    """A password, PIN or key could not be hashed or verified."""


class SecurityLogError(MeterdError):
    """The security log cannot be opened, appended to, read or verified."""


class MeterError(MeterdError):
    """The meter refused or failed an action."""


class ChannelError(MeterdError):
    """A channel (SSH, SFTP, serial, panel, Modbus) received bad input or failed."""
