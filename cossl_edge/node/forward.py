"""C-STORE of a report (and its heatmap SCs) to the destination AE (the PACS), with
back-off between attempts: the sender thread (:class:`Sender`) and the C-STORE SCU.

The schedule lives in the state database (``attempts``, ``next_send_at``), so a report that
was not acknowledged by the destination is sent again after a restart.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from pathlib import Path

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.sop_class import ComprehensiveSRStorage

from cossl_edge.node.config import Destination, NodeConfig
from cossl_edge.node.eventlog import EventLog
from cossl_edge.node.state import State
from cossl_edge.node.tls import client_context
from cossl_edge.node.transport import LowLatencyAE, no_delay


class SendError(RuntimeError):
    """The destination refused or could not be reached (message: why, no patient data)."""


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before attempt ``attempts + 1``: base · 2^(attempts − 1), at most ``cap``."""
    return min(cap, base * 2 ** max(attempts - 1, 0))


def send_file(path: Path, dest: Destination, calling_ae: str, timeout: float = 10.0,
              tls: ssl.SSLContext | None = None) -> None:
    """Send one SR file; raises :class:`SendError` unless the destination answers Success."""
    send_files([path], dest, calling_ae, timeout, tls)


def send_files(paths: list[Path], dest: Destination, calling_ae: str,
               timeout: float = 10.0, tls: ssl.SSLContext | None = None) -> None:
    """Send these files in order on one association (a series' heatmap SCs, then its SR, so
    that what the SR references is there when it arrives); raises :class:`SendError` at the
    first one the destination does not answer with Success. ``tls``: a client context
    (:func:`cossl_edge.node.tls.client_context`), the destination's host name checked."""
    datasets = [pydicom.dcmread(p) for p in paths]
    ae = LowLatencyAE(ae_title=calling_ae)  # the PACS's responses acknowledged at once
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = timeout
    for sop_class in dict.fromkeys([ComprehensiveSRStorage,
                                    *(str(ds.SOPClassUID) for ds in datasets)]):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title,
                         tls_args=(tls, dest.host) if tls is not None else None)
    if not assoc.is_established:
        raise SendError(f"association with {dest} not established (rejected, aborted, "
                        "unreachable" + (" or TLS handshake failed)" if tls else ")"))
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        no_delay(sock)  # each C-STORE goes out at once, not after the previous one's ACK
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None) if status else None
            if code is None:
                raise SendError(f"no C-STORE response from {dest} (timeout or abort)")
            if code not in (0x0000, 0xB000, 0xB007, 0xB006):  # success, or with warnings
                raise SendError(f"{dest} answered C-STORE status 0x{code:04X}")
    finally:
        if assoc.is_established:
            assoc.release()


class Sender:
    """The sender thread: due reports (their heatmap SCs, then the SR) to the destination,
    with back-off between attempts and ``send_failed`` after the last one."""

    def __init__(self, config: NodeConfig, state: State, log: EventLog,
                 stop_event: threading.Event) -> None:
        self.cfg, self.state, self.log, self.stop_event = config, state, log, stop_event
        self.tls = client_context(config.forward_tls) if config.forward_tls else None

    def run(self) -> None:
        dest = self.cfg.destination
        while dest is not None and not self.stop_event.is_set():
            due = self.state.due_sends(time.time())
            for row in due:
                if self.stop_event.is_set():
                    break
                self.send(row)
            if not due:
                self.stop_event.wait(self.cfg.poll_seconds)

    def send(self, row: dict) -> None:
        sid = self.log.id(row["series_uid"])
        t0 = time.time()
        try:
            pictures = [Path(p) for p in json.loads(row.get("sc_paths") or "[]")]
            send_files([*pictures, Path(row["sr_path"])], self.cfg.destination,
                       self.cfg.ae_title, tls=self.tls)
        except (SendError, OSError, RuntimeError) as e:
            attempts = row["attempts"] + 1
            final = attempts >= self.cfg.max_send_attempts
            wait = backoff(attempts, self.cfg.retry_base_seconds, self.cfg.retry_max_seconds)
            self.state.mark_send_failed(row["series_uid"], row["sr_uid"], str(e)[:200],
                                        None if final else time.time() + wait)
            self.log("send_failed", series=sid, attempt=attempts, error=str(e)[:200],
                     retry_in_s=None if final else round(wait, 2))
            return
        self.state.mark_sent(row["series_uid"], row["sr_uid"])
        self.log("sent", series=sid, revision=row["revision"], attempt=row["attempts"] + 1,
                 destination=str(self.cfg.destination), s=round(time.time() - t0, 3))
