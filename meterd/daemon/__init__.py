"""The daemon: configuration, policy store, channels under one supervisor, signals and shutdown."""
