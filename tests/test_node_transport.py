"""The node's connections: accepted and requested sockets acknowledge at once and send
without Nagle (cossl_edge/node/transport.py). The speed it buys is measured by
benchmarks/node_throughput.py, not here."""

from __future__ import annotations

import socket
import time

import pytest

pytest.importorskip("pynetdicom")

import pydicom  # noqa: E402
from dicom_factory import ct_series  # noqa: E402
from pynetdicom import AE, evt  # noqa: E402
from pynetdicom.sop_class import CTImageStorage, Verification  # noqa: E402

from cossl_edge.node import transport  # noqa: E402


def _server_sockets(server) -> list[socket.socket]:
    deadline = time.monotonic() + 30  # a hang guard, not a timing target
    while time.monotonic() < deadline:
        found = [a.dul.socket.socket for a in server.active_associations
                 if a.dul.socket is not None and a.dul.socket.socket is not None]
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError("no association reached the server")


@pytest.mark.skipif(transport.QUICKACK is None, reason="TCP_QUICKACK is Linux's")
def test_accepted_connections_are_low_latency_and_carry_data(tmp_path):
    received = []
    scp = AE(ae_title="NODE")
    scp.add_supported_context(Verification)
    scp.add_supported_context(CTImageStorage)
    handlers = [(evt.EVT_C_STORE, lambda e: (received.append(e.dataset.SOPInstanceUID), 0)[1]),
                (evt.EVT_C_ECHO, lambda e: 0)]
    server = transport.start_server(scp, ("127.0.0.1", 0), handlers)
    port = server.server_address[1]
    try:
        scu = AE(ae_title="SCANNER")
        scu.add_requested_context(Verification)
        scu.add_requested_context(CTImageStorage)
        assoc = scu.associate("127.0.0.1", port, ae_title="NODE")
        assert assoc.is_established
        try:
            (sock,) = _server_sockets(server)
            assert isinstance(sock, transport.QuickAckSocket)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert assoc.send_c_echo().Status == 0
            ds = pydicom.dcmread(ct_series(tmp_path, n=1, rows=64, cols=64)[0])
            status = assoc.send_c_store(ds)
            assert status.Status == 0
        finally:
            assoc.release()
        assert received == [ds.SOPInstanceUID]
    finally:
        server.shutdown()


@pytest.mark.skipif(transport.QUICKACK is None, reason="TCP_QUICKACK is Linux's")
def test_requested_connections_are_low_latency_and_carry_data(tmp_path):
    """The node as a C-STORE SCU (forwarding to the PACS): its connection acknowledges the
    responses at once and sends without Nagle."""
    received = []
    scp = AE(ae_title="PACS")
    scp.add_supported_context(CTImageStorage)
    server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
        (evt.EVT_C_STORE, lambda e: (received.append(e.dataset.SOPInstanceUID), 0)[1])])
    try:
        scu = transport.LowLatencyAE(ae_title="COSSL")
        scu.add_requested_context(CTImageStorage)
        assoc = scu.associate("127.0.0.1", server.server_address[1], ae_title="PACS")
        assert assoc.is_established
        try:
            sock = assoc.dul.socket.socket
            assert isinstance(sock, transport.QuickAckSocket)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            ds = pydicom.dcmread(ct_series(tmp_path, n=1, rows=64, cols=64)[0])
            assert assoc.send_c_store(ds).Status == 0
        finally:
            assoc.release()
        assert received == [ds.SOPInstanceUID]
    finally:
        server.shutdown()


@pytest.mark.skipif(transport.QUICKACK is None, reason="TCP_QUICKACK is Linux's")
def test_low_latency_keeps_the_connection_and_its_timeout():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname(), timeout=10) as client:
            conn, _ = listener.accept()
            conn.settimeout(7.0)
            fast = transport.low_latency(conn)
            with fast:
                assert isinstance(fast, transport.QuickAckSocket)
                assert fast.gettimeout() == 7.0
                assert fast.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
                client.sendall(b"C-STORE")
                assert fast.recv(64) == b"C-STORE"
                fast.sendall(b"OK")
                assert client.recv(64) == b"OK"


def test_no_delay_ignores_a_socket_that_refuses(monkeypatch):
    class Refusing:
        def setsockopt(self, *args):
            raise OSError("not a TCP socket")

    transport.no_delay(Refusing())  # must not raise
