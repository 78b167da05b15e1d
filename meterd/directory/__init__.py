"""Directory login: remote users authenticated by LDAP/Active Directory or RADIUS.

A backend answers one question, :meth:`DirectoryBackend.authenticate`, with
a :class:`DirectoryIdentity` (who, which directory groups) or one of two
errors: :class:`DirectoryRefused` (a server said no) and
:class:`DirectoryUnreachable` (no server answered in time).  What the
groups grant is the guard's business (``[groups.X] directory_group``).
"""
