"""The node's TCP connections: acknowledge every read at once, send without waiting.

A sender that keeps Nagle's algorithm on (dcmtk's ``storescu`` as Debian ships it, and many
scanners) holds the tail of each C-STORE until the receiver acknowledges what it sent
before; a receiver that delays its acknowledgements (Linux does, up to 40 ms) then costs
that delay per instance: about 20 instances/s on one association whatever the receiver
does. Re-arming ``TCP_QUICKACK`` after every read removes the wait on the node's side, and
``TCP_NODELAY`` does the same for what the node sends (responses, forwarded reports).
Where the platform has no ``TCP_QUICKACK`` (it is Linux's), the connection is left as is.

``benchmarks/node_throughput.py`` measures one association with and without it.
"""

from __future__ import annotations

import socket
import threading
from datetime import datetime

from pynetdicom.transport import ThreadedAssociationServer

QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def no_delay(sock: socket.socket) -> None:
    """Send small writes at once (no Nagle); ignored where the socket refuses it."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


class QuickAckSocket(socket.socket):
    """An accepted connection whose every ``recv`` is acknowledged at once."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        if data and QUICKACK is not None:
            try:  # the kernel leaves quick-ack mode on its own: re-arm it after each read
                self.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
            except OSError:
                pass
        return data


def low_latency(sock: socket.socket) -> socket.socket:
    """The same connection (same descriptor, same timeout) as a :class:`QuickAckSocket`
    with ``TCP_NODELAY``."""
    timeout = sock.gettimeout()
    fast = QuickAckSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    fast.settimeout(timeout)
    no_delay(fast)
    return fast


class LowLatencyServer(ThreadedAssociationServer):
    """pynetdicom's threaded association server, its accepted connections made
    :func:`low_latency`."""

    def get_request(self):
        client, address = self.socket.accept()
        if QUICKACK is not None and client.family in (socket.AF_INET, socket.AF_INET6):
            client = low_latency(client)
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(client, server_side=True)
        return client, address


def start_server(ae, address: tuple[str, int], evt_handlers: list):
    """``ae.start_server(address, block=False, evt_handlers=...)`` with
    :class:`LowLatencyServer`: the server runs on a daemon thread; returns it (stop it
    with its ``shutdown()``)."""
    server = ae.make_server(address, evt_handlers=evt_handlers,
                            server_class=LowLatencyServer)
    stamp = datetime.now().strftime("%Y%m%d%H%M%S")
    thread = threading.Thread(target=server.serve_forever, name=f"cossl-scp@{stamp}",
                              daemon=True)
    thread.start()
    ae._servers.append(server)  # as start_server does: the server's shutdown() expects it
    return server
