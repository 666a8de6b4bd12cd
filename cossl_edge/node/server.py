"""The node: a C-STORE/C-ECHO SCP that spools (:mod:`~cossl_edge.node.scp`), and the threads
that complete, classify and report series (:mod:`~cossl_edge.node.worker`) and forward the
reports (:class:`~cossl_edge.node.forward.Sender`).

Receiving runs on pynetdicom's threads (one per association); the worker thread moves series
through their states; the sender thread delivers reports with back-off. Every transition is
a committed state change, so a restarted node (even after kill -9) continues where it stood.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from cossl_edge.node.classify import SeriesClassifier
from cossl_edge.node.config import NodeConfig
from cossl_edge.node.eventlog import EventLog
from cossl_edge.node.forward import Sender
from cossl_edge.node.rules import Rules
from cossl_edge.node.scp import (  # re-exported: callers import them from here
    CANNOT_UNDERSTAND,
    DOES_NOT_MATCH_SOP_CLASS,
    IMAGE_STORAGE,
    OUT_OF_RESOURCES,
    SOP_CLASS_NOT_SUPPORTED,
    SUCCESS,
    TRANSFER_SYNTAXES,
    Refused,
    StoreSCP,
    sop_class_name,
)
from cossl_edge.node.spool import Spool
from cossl_edge.node.state import State
from cossl_edge.node.worker import Worker

__all__ = ["CANNOT_UNDERSTAND", "DOES_NOT_MATCH_SOP_CLASS", "IMAGE_STORAGE", "Node",
           "OUT_OF_RESOURCES", "Refused", "SOP_CLASS_NOT_SUPPORTED", "SUCCESS",
           "TRANSFER_SYNTAXES", "sop_class_name"]


class Node:
    """One node: its state, spool, log and classifier, the SCP, the worker and the sender."""

    def __init__(self, config: NodeConfig, classifier_file: Path, model: Path | None = None,
                 echo_log: bool = False) -> None:
        self.cfg = config
        for d in (config.state_dir, config.reports):
            d.mkdir(parents=True, exist_ok=True)
        self.rules = Rules.load(config.rules_file)
        self.classifier = SeriesClassifier(classifier_file, model, config.threads,
                                           config.abstain, config.aggregate,
                                           config.normal_class)
        self.log = EventLog(config.log_path, config.salt, echo_log)
        self.state = State(config.db_path)
        self.spool = Spool(config.spool, config.quarantine, config.salt,
                           config.max_spool_bytes // 10)
        self.stop_event = threading.Event()
        self.scp = StoreSCP(config, self.state, self.spool, self.log)
        self.worker = Worker(config, self.state, self.spool, self.rules, self.classifier,
                             self.log, self.stop_event)
        self.sender = Sender(config, self.state, self.log, self.stop_event)
        self._threads: list[threading.Thread] = []
        self._server = None
        self.scp.recover_orphans()

    def start(self) -> None:
        self._server = self.scp.start()
        for name, fn in (("worker", self.worker.run), ("sender", self.sender.run)):
            t = threading.Thread(target=fn, name=f"cossl-node-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self.log("start", ae_title=self.cfg.ae_title, port=self.cfg.port,
                 allowed_aes=list(self.cfg.allowed_aes), quiet_s=self.cfg.quiet_seconds,
                 send=list(self.cfg.send),
                 destination=str(self.cfg.destination) if self.cfg.destination else None,
                 rules=[r.name for r in self.rules.rules], **self.classifier.identity,
                 pending=self.state.counts())

    def stop(self) -> None:
        self.stop_event.set()
        if self._server is not None:
            self._server.shutdown()
        for t in self._threads:
            t.join(timeout=30)
        self.log("stop", counts=self.state.counts())
        self.state.close()
        self.log.close()

    def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT (the state is consistent at every instant anyway)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_event.set())
        self.start()
        try:
            while not self.stop_event.wait(0.5):
                pass
        finally:
            self.stop()

    def step(self) -> bool:
        """One pass of the worker (see :meth:`Worker.step`)."""
        return self.worker.step()

    def purge(self) -> int:
        """Free the spool of finished series past the retention (see :meth:`Worker.purge`)."""
        return self.worker.purge()
