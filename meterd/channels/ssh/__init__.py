"""The SSH channel: password and public-key login, the meter shell, and SFTP on the file area."""

from meterd.channels.ssh.config import SshConfig, load
from meterd.channels.ssh.listener import SshListener

__all__ = ["SshConfig", "SshListener", "load"]
