"""The channels: each turns one kind of wire activity into requests for the guard.

Channels never import each other and never check a permission themselves.
"""
