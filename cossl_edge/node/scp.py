"""Receiving: the node's C-STORE/C-ECHO SCP (pynetdicom, one thread per association).

Bytes as sent → checks (SOP class, size bounds, a parseable image data set matching the
request) → an fsync'd file renamed into the spool → the instance committed to the state
database → only then Success. A refused object gets a DIMSE failure status with an error
comment and is quarantined with its reason. Which calling AE titles may associate (the
allow-list) is pynetdicom's check, set up here; with TLS (:mod:`~cossl_edge.node.tls`), a
connection whose handshake fails (no or an untrusted client certificate, plain DICOM) is
closed before any DICOM byte is read (``tls_refused`` in the log).
"""

from __future__ import annotations

import ssl
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID_dictionary
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom import _config as pn_config
from pynetdicom.sop_class import Verification

from cossl_edge.dicom.header import DicomSkip, header_of_dataset, open_bounded, pydicom_quiet
from cossl_edge.node.config import NodeConfig
from cossl_edge.node.eventlog import EventLog
from cossl_edge.node.spool import Spool, fsync_file, publish, write_temp
from cossl_edge.node.state import Instance, State
from cossl_edge.node.tls import server_context
from cossl_edge.node.transport import start_server

# DIMSE statuses of a C-STORE (PS3.4 B.2.3, PS3.7 C)
SUCCESS = 0x0000
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000

# Stored as received; pixels are decoded at classification (missing codec: unreadable).
# Deflated is not offered: it inflates without bound before anything can be checked.
TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2.2",  # explicit VR big endian (retired)
    "1.2.840.10008.1.2.5",  # RLE lossless
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",  # JPEG
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",  # JPEG-LS
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",  # JPEG 2000
]
# The SOP classes the node classifies: every "… Image Storage" class of the standard.
IMAGE_STORAGE = frozenset(uid for uid, entry in UID_dictionary.items()
                          if entry[1] == "SOP Class" and "Image Storage" in entry[0])
FACT_KEYWORDS = ("Modality", "ImageType", "BodyPartExamined", "SOPClassUID")


def sop_class_name(uid: str) -> str:
    entry = UID_dictionary.get(uid)
    return entry[0] if entry else uid


class Refused(Exception):
    """A C-STORE answered with a failure ``status``; ``path``: the object's temporary file
    when it was written (it goes to the quarantine)."""

    def __init__(self, status: int, reason: str, path: Path | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.path = status, reason, path


class StoreSCP:
    """The association side of the node: what arrives is checked, spooled and committed."""

    def __init__(self, config: NodeConfig, state: State, spool: Spool, log: EventLog) -> None:
        self.cfg, self.state, self.spool, self.log = config, state, spool, log

    def start(self):
        """Listen (non-blocking; connections made low-latency by
        :mod:`~cossl_edge.node.transport`); returns pynetdicom's server, to ``shutdown()``."""
        # pynetdicom writes each arriving data set to a temporary file as its fragments
        # come (memory stays flat whatever the size) — in spool/.tmp, on the spool's file
        # system, so that spooling it is a rename.
        pn_config.STORE_RECV_CHUNKED_DATASET = True
        tempfile.tempdir = str(self.spool.tmp)
        ae = AE(ae_title=self.cfg.ae_title)
        ae.maximum_associations = 16
        ae.network_timeout = ae.dimse_timeout = ae.acse_timeout = 60
        ae.require_called_aet = True
        if self.cfg.allowed_aes:
            ae.require_calling_aet = list(self.cfg.allowed_aes)
        ae.add_supported_context(Verification)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, TRANSFER_SYNTAXES)
        handlers = [(evt.EVT_C_STORE, self.on_store), (evt.EVT_C_ECHO, lambda e: SUCCESS),
                    (evt.EVT_REJECTED, self.on_rejected), (evt.EVT_ACCEPTED, self.on_accepted)]
        context = server_context(self.cfg.tls) if self.cfg.tls is not None else None
        return start_server(ae, (self.cfg.host, self.cfg.port), handlers, context,
                            self.on_tls_refused)

    def on_tls_refused(self, address, reason: str) -> None:
        """A connection closed at its TLS handshake: no association, nothing read."""
        peer = address[0] if isinstance(address, tuple) else str(address)
        self.log("tls_refused", peer=peer, reason=reason)

    # -- association events --------------------------------------------------------------
    def on_accepted(self, event) -> None:
        sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
        tls = sock.version() if isinstance(sock, ssl.SSLSocket) else None
        self.log("association", calling_ae=_calling(event), peer=event.assoc.requestor.address,
                 tls=tls)

    def on_rejected(self, event) -> None:
        calling = _calling(event)
        foreign = self.cfg.allowed_aes and calling not in self.cfg.allowed_aes
        self.log("association_rejected", calling_ae=calling, peer=event.assoc.requestor.address,
                 reason="calling AE title not in the allow-list" if foreign
                 else "called AE title is not this node's, or no common context")

    def on_store(self, event) -> Dataset:
        t0 = time.time()
        req = event.request
        sop_class, sop_uid = str(req.AffectedSOPClassUID), str(req.AffectedSOPInstanceUID)
        calling = _calling(event)
        try:  # chunked receive: pynetdicom wrote it to a file in spool/.tmp as it came
            source: bytes | Path | None = Path(event.dataset_path)
        except AttributeError:
            try:
                source = event.encoded_dataset(include_meta=True)
            except Exception:  # noqa: BLE001 - the peer sent something pydicom cannot frame
                source = None
        facts = {"calling_ae": calling, "sop_class": sop_class_name(sop_class),
                 "instance": self.log.id(sop_uid)}
        try:
            if source is None:
                raise Refused(CANNOT_UNDERSTAND, "the data set could not be framed")
            status = self.store(source, sop_class, sop_uid, calling, facts)
        except Refused as r:
            on_disk = r.path or (source if isinstance(source, Path) else None)
            if r.status != OUT_OF_RESOURCES:
                self.spool.quarantine(on_disk, source if on_disk is None else None, r.reason,
                                      facts)
            elif r.path is not None:
                r.path.unlink(missing_ok=True)
            self.log("refused", status=f"0x{r.status:04X}", reason=r.reason, **facts)
            return _status(r.status, r.reason)
        self.log("received", duplicate=status == "duplicate", ms=round(1e3 * (time.time() - t0),
                 1), **facts)
        return _status(SUCCESS)

    # -- one instance --------------------------------------------------------------------
    def store(self, source: bytes | Path, sop_class: str, sop_uid: str, calling: str,
              facts: dict) -> str:
        """Check, spool and commit one instance (its bytes, or a file in spool/.tmp)."""
        if sop_class not in IMAGE_STORAGE:
            raise Refused(SOP_CLASS_NOT_SUPPORTED, f"SOP class not supported here: "
                          f"{sop_class_name(sop_class)} (images only)")
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
        if size > self.cfg.max_instance_bytes:
            raise Refused(OUT_OF_RESOURCES, f"instance of {size} bytes exceeds the "
                          f"limit of {self.cfg.max_instance_bytes}")
        if not self.spool.reserve(size, self.cfg.max_spool_bytes):
            raise Refused(OUT_OF_RESOURCES, "spool full; retry later")
        stored = False
        try:
            tmp, ds, frames = self._write_checked(source, sop_class, sop_uid)
            series_uid, study_uid = str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID)
            if self.state.known(sop_uid):  # a resend of an object already acknowledged
                tmp.unlink(missing_ok=True)
                return "duplicate"
            final = publish(tmp, self.spool.path_for(series_uid, sop_uid))
            inst = Instance(sop_uid, series_uid, sop_class, str(final), size,
                            calling_ae=calling, received_at=time.time(), frames=frames,
                            **instance_facts(ds))
            stored = self.state.add_instance(inst, study_uid)
            return "stored" if stored else "duplicate"
        finally:
            if not stored:
                self.spool.release(size)

    def _write_checked(self, source: bytes | Path, sop_class: str, sop_uid: str):
        """Write to a temporary file (or take pynetdicom's), fsync it, then check it as an
        image; Refused if not."""
        if isinstance(source, bytes):
            path = write_temp(self.spool.tmp, source)
        else:
            path = source
            fsync_file(path)
        try:
            with open_bounded(path) as f, pydicom_quiet():
                ds = pydicom.dcmread(f, stop_before_pixels=True)
                pixel_bytes = f.size - f.tell()
                for _ in ds:  # convert every element now: a damaged one raises here
                    pass
        except Exception as e:  # noqa: BLE001 - malformed input raises many types
            raise Refused(CANNOT_UNDERSTAND, f"malformed data set ({type(e).__name__})",
                          path) from None
        if "SOPInstanceUID" not in ds and "SOPClassUID" not in ds:
            raise Refused(CANNOT_UNDERSTAND, "no data set could be read (no SOP Class or "
                          "Instance UID)", path)
        problem = None
        if str(ds.get("SOPInstanceUID", "")) != sop_uid:
            problem = "SOP Instance UID differs from the request's"
        elif str(ds.get("SOPClassUID", "")) != sop_class:
            problem = "SOP Class UID differs from the request's"
        elif not ds.get("SeriesInstanceUID") or not ds.get("StudyInstanceUID"):
            problem = "no Study or Series Instance UID"
        else:
            try:  # the project's checks: pixel data present, sizes sane
                header = header_of_dataset(ds, path, pixel_bytes)
            except DicomSkip as e:
                problem = str(e)
        if problem:
            raise Refused(DOES_NOT_MATCH_SOP_CLASS, problem, path)
        return path, ds, header.frames

    def recover_orphans(self) -> None:
        """Files renamed into the spool by a node killed before it committed them: complete
        objects (never acknowledged); register them rather than lose them."""
        known = self.state.paths()
        for path in self.spool.root.glob("*/*.dcm"):
            if str(path) in known:
                continue
            try:
                with pydicom_quiet():
                    ds = pydicom.dcmread(path, stop_before_pixels=True)
                inst = Instance(str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID),
                                str(ds.SOPClassUID), str(path), path.stat().st_size,
                                received_at=time.time(),
                                frames=max(int(ds.get("NumberOfFrames", 1) or 1), 1),
                                **instance_facts(ds))
                self.state.add_instance(inst, str(ds.StudyInstanceUID))
                self.log("recovered", instance=self.log.id(inst.sop_uid))
            except Exception as e:  # noqa: BLE001
                self.log("recover_failed", reason=type(e).__name__)


def instance_facts(ds: Dataset) -> dict[str, str]:
    """The header attributes the selection rules read, as stored with the instance."""
    image_type = ds.get("ImageType", "")
    if not isinstance(image_type, str):
        image_type = "\\".join(str(v) for v in image_type)
    return {"modality": str(ds.get("Modality", "") or ""), "image_type": image_type,
            "body_part": str(ds.get("BodyPartExamined", "") or "")}


def _calling(event) -> str:
    title = event.assoc.requestor.ae_title
    return (title.decode(errors="replace") if isinstance(title, bytes) else str(title)).strip()


def _status(code: int, comment: str | None = None) -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]
    return ds
