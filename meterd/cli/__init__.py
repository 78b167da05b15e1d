"""Command-line tools: ``meterctl`` (the operator's tool) and its sub-commands."""
