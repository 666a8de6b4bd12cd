"""CLI commands, one module each; see :mod:`cossl_edge.cli`."""
