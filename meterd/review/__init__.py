"""Access review from the security log: usage, findings, what-if replay and least-privilege suggestions.

Sits above the policy core and the security log and below the CLI; the
computing modules (usage, findings, whatif, suggest, render, html) do no I/O,
:mod:`meterd.review.source` reads and verifies the log.
"""
