"""The node's TCP connections: acknowledge every read at once, send without waiting.

A sender that keeps Nagle's algorithm on (dcmtk's ``storescu`` as Debian ships it, and many
scanners) holds the tail of each C-STORE until the receiver acknowledges what it sent
before; a receiver that delays its acknowledgements (Linux does, up to 40 ms) then costs
that delay per instance: about 20 instances/s on one association whatever the receiver
does. Re-arming ``TCP_QUICKACK`` after every read removes the wait on the node's side, and
``TCP_NODELAY`` does the same for what the node sends (responses, forwarded reports).
Where the platform has no ``TCP_QUICKACK`` (it is Linux's), the connection is left as is.
A TLS connection (:mod:`~cossl_edge.node.tls`) is acknowledged the same way.

The same holds the other way round: the node forwarding its objects to a PACS waits for
each C-STORE response, and Orthanc answered about 20 C-STOREs/s on one association to a
sender that delays its acknowledgements, 135–180/s to one that acknowledges every read
(:class:`LowLatencyAE`).

``benchmarks/node_throughput.py`` measures one association with and without it.
"""

from __future__ import annotations

import socket
import ssl
import threading
from datetime import datetime

from pynetdicom import AE
from pynetdicom.transport import ThreadedAssociationServer

from cossl_edge.node.tls import HANDSHAKE_TIMEOUT, why

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


class QuickAckSSLSocket(ssl.SSLSocket):
    """A TLS connection whose every read of the underlying socket is acknowledged at once."""

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        data = super().recv(buflen, flags)
        if data and QUICKACK is not None:
            try:
                self.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
            except OSError:
                pass
        return data


class LowLatencyAE(AE):
    """pynetdicom's AE whose requested associations are :func:`low_latency` from before they
    connect (over TLS, each read of the TLS connection acknowledged the same way): for the
    node as a C-STORE SCU (forwarding to the PACS)."""

    def _create_socket(self, *args, **kwargs):
        # pynetdicom's hook that makes (binds, does not connect) a requestor's socket; a
        # pynetdicom without it leaves the connection as it makes it
        sock = super()._create_socket(*args, **kwargs)
        raw = getattr(sock, "socket", None)
        if QUICKACK is None or raw is None or raw.family not in (socket.AF_INET,
                                                                 socket.AF_INET6):
            return sock
        sock.socket = low_latency(raw)
        tls_args = getattr(sock, "tls_args", None)
        if tls_args:  # connect() wraps the socket in the context's class
            tls_args[0].sslsocket_class = QuickAckSSLSocket
        return sock


class LowLatencyServer(ThreadedAssociationServer):
    """pynetdicom's threaded association server, its accepted connections made
    :func:`low_latency`. With TLS, the handshake runs on the connection's own thread (not
    on the accepting one, which a slow or hostile client would hold up), bounded in time;
    a failed one is reported to ``on_tls_refused(address, reason)`` and the connection
    closed before any DICOM byte is read."""

    on_tls_refused = None

    def get_request(self):
        client, address = self.socket.accept()
        if QUICKACK is not None and client.family in (socket.AF_INET, socket.AF_INET6):
            client = low_latency(client)
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(client, server_side=True,
                                                  do_handshake_on_connect=False)
        return client, address

    def process_request_thread(self, request, client_address) -> None:
        if isinstance(request, ssl.SSLSocket):
            timeout = request.gettimeout()
            try:
                request.settimeout(HANDSHAKE_TIMEOUT)
                request.do_handshake()
                request.settimeout(timeout)
            except (OSError, ValueError) as e:  # ssl.SSLError, a reset, a timeout
                if self.on_tls_refused is not None:
                    self.on_tls_refused(client_address, why(e))
                self.shutdown_request(request)
                return
        super().process_request_thread(request, client_address)


def start_server(ae, address: tuple[str, int], evt_handlers: list,
                 ssl_context: ssl.SSLContext | None = None, on_tls_refused=None):
    """``ae.start_server(address, block=False, evt_handlers=...)`` with
    :class:`LowLatencyServer` (and TLS when ``ssl_context`` is given): the server runs on a
    daemon thread; returns it (stop it with its ``shutdown()``)."""
    if ssl_context is not None and QUICKACK is not None:
        ssl_context.sslsocket_class = QuickAckSSLSocket
    server = ae.make_server(address, evt_handlers=evt_handlers,
                            server_class=LowLatencyServer, ssl_context=ssl_context)
    server.on_tls_refused = on_tls_refused
    stamp = datetime.now().strftime("%Y%m%d%H%M%S")
    thread = threading.Thread(target=server.serve_forever, name=f"cossl-scp@{stamp}",
                              daemon=True)
    thread.start()
    ae._servers.append(server)  # as start_server does: the server's shutdown() expects it
    return server
