"""The node's settings: one dataclass that the CLI fills and every part reads."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from cossl_edge.node.tls import TlsFiles

AGGREGATIONS = ("max", "mean")
SENDABLE = ("sr", "pmap", "seg", "sc")  # what --send names; the SR always goes
SEND_DEFAULT = ("sr", "pmap", "seg", "sc")


def parse_send(text: str) -> tuple[str, ...]:
    """``sr,pmap,seg,sc`` → the objects written and sent, in SENDABLE's order; the SR is the
    result and is always among them."""
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in SENDABLE]
    if bad or not names:
        raise ValueError(f"--send {text!r}: a comma-separated list of {', '.join(SENDABLE)}"
                         " (e.g. sr,pmap,seg)")
    return tuple(n for n in SENDABLE if n in names or n == "sr")
_AE_TITLE = re.compile(r"^[\x20-\x7e]{1,16}$")


@dataclass(frozen=True)
class Destination:
    """Where SRs go by C-STORE: ``AE@host:port``."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        m = re.fullmatch(r"([^@]{1,16})@([^:]+):(\d{1,5})", text.strip())
        if not m:
            raise ValueError(f"--forward {text!r}: expected AE_TITLE@HOST:PORT, e.g. "
                             "PACS@127.0.0.1:4242")
        return cls(m.group(1), m.group(2), int(m.group(3)))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass
class NodeConfig:
    """Everything the node needs besides the classifier and the model.

    state_dir: holds ``spool/`` (received instances), ``quarantine/`` (refused ones with
        their reason), ``reports/`` (the SRs), ``state.sqlite`` and ``node.jsonl``.
    allowed_aes: calling AE titles accepted; empty: any.
    quiet_seconds: a series is complete when no instance of it arrived for this long.
    aggregate: ``max`` (the series takes the result of its most abnormal image) or ``mean``
        (the mean of its images' probabilities).
    abstain: threshold below which a result is ``unknown`` (None: the classifier's own).
    max_instance_bytes / max_spool_bytes: refuse (Out of Resources) beyond these.
        The quarantine keeps refused objects up to a tenth of ``max_spool_bytes``.
    retain_seconds: a series' files leave the spool this long after its last instance once
        it is finished (SR sent, reported without destination, not selected, or failed).
    heatmaps: with a classifier of kind ``local``, at most this many heatmap Secondary
        Captures per series (images called a finding, the most likely first); 0: none.
    send: the objects written and sent per series (:data:`SENDABLE`): ``sr`` always;
        with a classifier that gives heatmaps ``pmap`` (a Parametric Map of P(finding)) and
        ``seg`` (a BINARY Segmentation) per image called a finding, ``sc`` (heatmap
        Secondary Captures, at most ``heatmaps``).
    tls: the SCP's certificate and key, and the CA its clients' certificates must chain to
        (None: plain DICOM). forward_tls: TLS to the destination (its CA; this node's client
        certificate and key), None: plain DICOM (:mod:`~cossl_edge.node.tls`).
    """

    state_dir: Path
    port: int = 11112
    ae_title: str = "COSSL"
    host: str = "0.0.0.0"
    allowed_aes: tuple[str, ...] = ()
    quiet_seconds: float = 10.0
    rules_file: Path | None = None
    aggregate: str = "max"
    abstain: float | None = None
    normal_class: str | None = None
    destination: Destination | None = None
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    max_send_attempts: int = 50
    max_instance_bytes: int = 512 << 20
    max_spool_bytes: int = 50 << 30
    retain_seconds: float = 24 * 3600.0
    heatmaps: int = 4
    send: tuple[str, ...] = SEND_DEFAULT
    tls: TlsFiles | None = None
    forward_tls: TlsFiles | None = None
    threads: int = 1
    batch_size: int = 32
    poll_seconds: float = 0.1
    salt: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        for title in (self.ae_title, *self.allowed_aes):
            if not _AE_TITLE.match(title) or not title.strip():
                raise ValueError(f"AE title {title!r}: 1 to 16 printable ASCII characters")
        if self.aggregate not in AGGREGATIONS:
            raise ValueError(f"--aggregate must be one of {AGGREGATIONS}, got "
                             f"{self.aggregate!r}")
        unknown = set(self.send) - set(SENDABLE)
        if unknown or "sr" not in self.send:
            raise ValueError(f"send: {sorted(unknown)} unknown, or sr missing")
        if not 0 < self.port < 65536:
            raise ValueError(f"--port {self.port}: must be 1 to 65535")
        if self.quiet_seconds < 0:
            raise ValueError("--eostudy-timeout must be ≥ 0 seconds")

    @property
    def spool(self) -> Path:
        return self.state_dir / "spool"

    @property
    def quarantine(self) -> Path:
        return self.state_dir / "quarantine"

    @property
    def reports(self) -> Path:
        return self.state_dir / "reports"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "state.sqlite"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "node.jsonl"
