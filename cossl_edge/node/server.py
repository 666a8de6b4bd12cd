"""The node: a pynetdicom C-STORE/C-ECHO SCP that spools, and the threads that complete,
classify, report and forward series.

Receiving (one thread per association, pynetdicom's): bytes as sent → checks → an fsync'd file
renamed into the spool → the instance committed to the state database → only then Success.
A refused object gets a DIMSE failure status with an error comment and is quarantined with
its reason. The worker thread moves series through their states; the sender thread delivers
reports with back-off. Every transition is a committed state change, so a restarted node
(even after kill -9) continues where it stood.
"""

from __future__ import annotations

import json
import signal
import tempfile
import threading
import time
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID_dictionary
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom import _config as pn_config
from pynetdicom.sop_class import Verification

from cossl_edge.dicom.header import DicomSkip, header_of_dataset, open_bounded, pydicom_quiet
from cossl_edge.node import capture
from cossl_edge.node import report as sr
from cossl_edge.node.classify import ImageResult, SeriesClassifier
from cossl_edge.node.config import NodeConfig
from cossl_edge.node.eventlog import EventLog
from cossl_edge.node.forward import SendError, backoff, send_files
from cossl_edge.node.rules import Rules
from cossl_edge.node.spool import Spool, fsync_file, publish, write_atomic, write_temp
from cossl_edge.node.state import Instance, State

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


class Node:
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
        self._threads: list[threading.Thread] = []
        self._server = None
        self._recover_orphans()

    # -- start and stop ------------------------------------------------------------------
    def start(self) -> None:
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
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, lambda e: SUCCESS),
                    (evt.EVT_REJECTED, self._on_rejected), (evt.EVT_ACCEPTED, self._on_accepted)]
        self._server = ae.start_server((self.cfg.host, self.cfg.port), block=False,
                                       evt_handlers=handlers)
        for name, fn in (("worker", self._work_loop), ("sender", self._send_loop)):
            t = threading.Thread(target=fn, name=f"cossl-node-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self.log("start", ae_title=self.cfg.ae_title, port=self.cfg.port,
                 allowed_aes=list(self.cfg.allowed_aes), quiet_s=self.cfg.quiet_seconds,
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

    # -- receiving -----------------------------------------------------------------------
    def _on_accepted(self, event) -> None:
        self.log("association", calling_ae=_calling(event), peer=event.assoc.requestor.address)

    def _on_rejected(self, event) -> None:
        calling = _calling(event)
        foreign = self.cfg.allowed_aes and calling not in self.cfg.allowed_aes
        self.log("association_rejected", calling_ae=calling, peer=event.assoc.requestor.address,
                 reason="calling AE title not in the allow-list" if foreign
                 else "called AE title is not this node's, or no common context")

    def _on_store(self, event) -> Dataset:
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
            status = self._store(source, sop_class, sop_uid, calling, facts)
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

    def _store(self, source: bytes | Path, sop_class: str, sop_uid: str, calling: str,
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
                            **_facts(ds))
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

    def _recover_orphans(self) -> None:
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
                                **_facts(ds))
                self.state.add_instance(inst, str(ds.StudyInstanceUID))
                self.log("recovered", instance=self.log.id(inst.sop_uid))
            except Exception as e:  # noqa: BLE001
                self.log("recover_failed", reason=type(e).__name__)

    # -- the worker ----------------------------------------------------------------------
    def _work_loop(self) -> None:
        self._warm_up()
        next_purge = 0.0
        while not self.stop_event.is_set():
            try:
                if time.time() >= next_purge:
                    self.purge()
                    next_purge = time.time() + min(60.0, max(self.cfg.retain_seconds, 0.5))
                busy = self.step()
            except Exception as e:  # noqa: BLE001 - keep serving; the state is consistent
                self.log("worker_error", error=f"{type(e).__name__}: {str(e)[:200]}")
                busy = False
            if not busy:
                self.stop_event.wait(self.cfg.poll_seconds)

    def purge(self) -> int:
        """Free the spool of finished series older than the retention; their state stays."""
        claimed = self.state.claim_expired(time.time() - self.cfg.retain_seconds,
                                           self.cfg.destination is not None)
        for series_uid, paths in claimed.items():
            freed = self.spool.free_files(paths)
            self.log("spool_freed", series=self.log.id(series_uid), files=len(paths),
                     bytes=freed)
        return len(claimed)

    def _warm_up(self) -> None:
        """highdicom loads its code tables on first use (~1 s, an SC another ~0.6 s): pay
        that before any series."""
        try:
            ds = Dataset()
            ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3.4.5"
            ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3.4", "1.2.3.4.6"
            ds.Modality = "OT"
            p = [1.0 / len(self.classifier.clf.classes)] * len(self.classifier.clf.classes)
            result = self.classifier.combine([ImageResult("1.2.3.4.5", "x", p[0], p)])
            sr.encode(sr.build_sr({"1.2.3.4.5": ds}, result, self.classifier.identity,
                                  "1.2.3.4.6", 0, self.cfg.ae_title))
            if self.classifier.has_heatmaps and self.cfg.heatmaps > 0:
                import numpy as np

                sr.encode(capture.build_sc(sr._with_type2(ds), np.zeros((8, 8, 3), np.uint8),
                                           "x", 0.5, self.classifier.identity, "1.2.3.4.6"))
        except Exception as e:  # noqa: BLE001 - only a warm-up
            self.log("warm_up_failed", error=type(e).__name__)

    def step(self) -> bool:
        """One pass: complete quiet series, finish and report them, then classify up to one
        batch of instances as they arrive (so a complete series has little left to do).
        True when it did something."""
        did = False
        for uid in self.state.quiet_series(time.time(), self.cfg.quiet_seconds):
            self._complete(uid)
            self._advance(uid)  # to its SR before the next series: the first SR is not late
            did = True
        for uid in self.state.series_in("selected") + self.state.series_in("classified"):
            self._advance(uid)  # left over by a restart or a reopened series
            did = True
        if not did:
            did = self._classify(self.state.pending(self.cfg.batch_size)) > 0
        return did

    def _advance(self, series_uid: str) -> None:
        if self.state.series(series_uid).get("state") == "selected":
            self._finish(series_uid)
        if self.state.series(series_uid).get("state") == "classified":
            self._report(series_uid)

    def _facts_of(self, inst: Instance) -> dict[str, str]:
        return {"Modality": inst.modality, "ImageType": inst.image_type,
                "BodyPartExamined": inst.body_part, "SOPClassUID": inst.sop_class}

    def _classify(self, todo: list[Instance]) -> int:
        """Apply the rules to these instances and classify the selected ones (one commit)."""
        if not todo:
            return 0
        chosen = [i for i in todo if self.rules.select(self._facts_of(i)) is not None]
        picked = {i.sop_uid for i in chosen}
        ruled_out = [i.sop_uid for i in todo if i.sop_uid not in picked]
        images, _ = self.classifier.classify(
            [(i.sop_uid, Path(i.path), i.frames) for i in chosen], self.cfg.batch_size)
        results = {r.sop_uid: (r.label, r.probability,
                               json.dumps(r.probabilities) if r.probabilities else None,
                               r.reason, json.dumps(r.heatmap) if r.heatmap else None)
                   for r in images}
        series_of = {i.sop_uid: i.series_uid for i in todo}
        done = set(self.state.save_results(results, ruled_out))
        for r in images:
            if r.sop_uid in done:
                self.log("image", series=self.log.id(series_of[r.sop_uid]),
                         instance=self.log.id(r.sop_uid), label=r.label,
                         probability=r.probability, unreadable=r.reason)
        return len(todo)

    def _complete(self, series_uid: str) -> None:
        insts = self.state.instances(series_uid)
        rules = {self.rules.select(self._facts_of(i)) for i in insts}
        rules.discard(None)
        self._classify([i for i in insts if i.state == "received"])
        state = self.state.complete_series(series_uid, ",".join(sorted(rules)) or None)
        s = self.state.series(series_uid)
        self.log("series_complete", series=self.log.id(series_uid), revision=s["revision"],
                 selected=state == "selected", rule=s["rule"], instances=len(insts))
        if state == "not_selected":
            self.log("series_not_selected", series=self.log.id(series_uid),
                     instances=len(insts))

    def _finish(self, series_uid: str) -> None:
        revision = self.state.series(series_uid)["revision"]
        self._classify(self.state.instances(series_uid, "received"))
        if self.state.series_classified(series_uid, revision):
            self.log("series_classified", series=self.log.id(series_uid), revision=revision)

    def _report(self, series_uid: str) -> None:
        t0 = time.time()
        s = self.state.series(series_uid)
        revision = s["revision"]
        insts = [i for i in self.state.instances(series_uid)
                 if i.state in ("classified", "unreadable")]
        per_image = [ImageResult(i.sop_uid, i.label, i.probability,
                                 json.loads(i.proba) if i.proba else None, i.reason,
                                 json.loads(i.heat) if i.heat else None)
                     for i in insts]
        result = self.classifier.combine(per_image)
        sid = self.log.id(series_uid)
        if result is None:
            self.state.set_report(series_uid, revision, {"label": "unreadable"}, "", "", False)
            self.log("series_unreadable", series=sid, revision=revision, images=len(insts))
            return
        headers, gone = {}, 0
        for i in insts:
            if i.state == "classified":
                try:
                    with pydicom_quiet():
                        headers[i.sop_uid] = sr.read_header_dataset(Path(i.path))
                except FileNotFoundError:  # freed from the spool before the series reopened
                    gone += 1
        result.per_image = [r for r in result.per_image
                            if r.sop_uid in headers or r.probabilities is None]
        if result.key_image is not None and result.key_image not in headers:
            result.key_image = None
        pictures = self._heatmaps(series_uid, result, headers,
                                  {i.sop_uid: i for i in insts})
        doc = sr.build_sr(headers, result, self.classifier.identity, series_uid, revision,
                          self.cfg.ae_title, {uid: ds for uid, (ds, _) in pictures.items()})
        path = self.cfg.reports / f"{sid}-r{revision}.dcm"
        write_atomic(path, sr.encode(doc), self.cfg.reports / ".tmp")
        summary = result.summary()
        if self.state.set_report(series_uid, revision, summary, str(path),
                                 str(doc.SOPInstanceUID), self.cfg.destination is not None,
                                 [str(p) for _, p in pictures.values()]):
            self.log("report", series=sid, revision=revision, **summary, files_gone=gone,
                     heatmaps=len(pictures),
                     model_sha256=self.classifier.identity["model_sha256"],
                     s=round(time.time() - t0, 3))

    def _heatmaps(self, series_uid: str, result, headers: dict, insts: dict
                  ) -> dict[str, tuple[Dataset, Path]]:
        """Kind ``local``: the heatmap SCs of the images called a finding (the most likely
        first, at most ``cfg.heatmaps``), written under reports/ → {source SOP UID: (SC,
        file)}. An image that cannot be drawn is left out (logged, no patient data)."""
        if not self.classifier.has_heatmaps:
            return {}
        clf = self.classifier
        chosen = capture.choose([r for r in result.per_image if r.sop_uid in headers],
                                clf.normal, list(clf.clf.classes), self.cfg.heatmaps)
        out = {}
        for r, p_finding in chosen:
            inst = insts[r.sop_uid]
            iid = self.log.id(r.sop_uid)
            try:
                rgb = clf.heatmap_picture(Path(inst.path), inst.frames, r.heatmap)
                ds = capture.build_sc(headers[r.sop_uid], rgb, r.label, p_finding,
                                      clf.identity, series_uid)
            except Exception as e:  # noqa: BLE001 - a picture is extra; the SR goes anyway
                self.log("heatmap_failed", series=self.log.id(series_uid), instance=iid,
                         error=type(e).__name__)
                continue
            path = self.cfg.reports / f"{self.log.id(series_uid)}-heatmap-{iid}.dcm"
            write_atomic(path, sr.encode(ds), self.cfg.reports / ".tmp")
            out[r.sop_uid] = (ds, path)
        return out

    # -- the sender ----------------------------------------------------------------------
    def _send_loop(self) -> None:
        dest = self.cfg.destination
        while dest is not None and not self.stop_event.is_set():
            due = self.state.due_sends(time.time())
            for row in due:
                if self.stop_event.is_set():
                    break
                self._send(row)
            if not due:
                self.stop_event.wait(self.cfg.poll_seconds)

    def _send(self, row: dict) -> None:
        sid = self.log.id(row["series_uid"])
        t0 = time.time()
        try:
            pictures = [Path(p) for p in json.loads(row.get("sc_paths") or "[]")]
            send_files([*pictures, Path(row["sr_path"])], self.cfg.destination,
                       self.cfg.ae_title)
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


def _calling(event) -> str:
    title = event.assoc.requestor.ae_title
    return (title.decode(errors="replace") if isinstance(title, bytes) else str(title)).strip()


def _status(code: int, comment: str | None = None) -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]
    return ds


def _facts(ds: Dataset) -> dict[str, str]:
    image_type = ds.get("ImageType", "")
    if not isinstance(image_type, str):
        image_type = "\\".join(str(v) for v in image_type)
    return {"modality": str(ds.get("Modality", "") or ""), "image_type": image_type,
            "body_part": str(ds.get("BodyPartExamined", "") or "")}
