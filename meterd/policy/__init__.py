"""The permission core: catalogue, policy model, loader, compiler and evaluator.

Nothing in this package performs I/O except :mod:`meterd.policy.files`, which
reads policy files and hands their parsed contents to the pure loader.
"""
