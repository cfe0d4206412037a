"""The engine's CLI commands (see pini_core.cli.COMMANDS)."""
