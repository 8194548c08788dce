"""Subcommands of the `ionclock` CLI, one module each."""
