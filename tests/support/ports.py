"""A free TCP port on the loopback interface (for the node, Orthanc and torch.distributed)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port that nothing listens on now (the OS's pick for an ephemeral bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
