"""The pipeline worker: series assembly → selection rules → classification → SR → queued
for forwarding, and the spool's retention.

Instances are classified as they arrive (so a complete series has little left to do); a
series quiet for ``quiet_seconds`` is complete, then ``selected`` or ``not_selected``; a
selected one is ``classified`` once none of its instances waits, then ``reported`` (its
Comprehensive SR, and with a local classifier its heatmap Secondary Captures, under
reports/). Each transition is a committed state change, so the worker started again after a
crash picks up where it stood.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from pydicom.dataset import Dataset

from cossl_edge.dicom.header import pydicom_quiet
from cossl_edge.node import capture, overlays
from cossl_edge.node import structured_report as sr
from cossl_edge.node.classify import ImageResult, SeriesClassifier, classified_frame
from cossl_edge.node.config import NodeConfig
from cossl_edge.node.eventlog import EventLog
from cossl_edge.node.overlay_frames import OverlayFrame, OverlayUnavailable
from cossl_edge.node.rules import Rules
from cossl_edge.node.spool import Spool, write_atomic
from cossl_edge.node.state import Instance, State


class Worker:
    def __init__(self, config: NodeConfig, state: State, spool: Spool, rules: Rules,
                 classifier: SeriesClassifier, log: EventLog,
                 stop_event: threading.Event) -> None:
        self.cfg, self.state, self.spool, self.rules = config, state, spool, rules
        self.classifier, self.log, self.stop_event = classifier, log, stop_event

    def run(self) -> None:
        """The worker thread: until ``stop_event``, purge the spool now and then and step."""
        self.warm_up()
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

    def warm_up(self) -> None:
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
            if self.classifier.has_heatmaps and {"pmap", "seg"} & set(self.cfg.send):
                self._warm_overlays()
            if self.classifier.has_heatmaps and self.cfg.heatmaps > 0 and \
                    "sc" in self.cfg.send:
                import numpy as np

                sr.encode(capture.build_sc(sr._with_type2(ds), np.zeros((8, 8, 3), np.uint8),
                                           "x", 0.5, self.classifier.identity, "1.2.3.4.6"))
        except Exception as e:  # noqa: BLE001 - only a warm-up
            self.log("warm_up_failed", error=type(e).__name__)

    def _warm_overlays(self) -> None:
        """highdicom's first Parametric Map and Segmentation (~0.3 s): on a made-up CT."""
        import numpy as np

        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.7"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3.4", "1.2.3.4.6"
        ds.FrameOfReferenceUID, ds.Modality = "1.2.3.4.8", "CT"
        ds.Rows = ds.Columns = 8
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 1.0
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, 0]
        frame = OverlayFrame(ds, None, np.zeros((8, 8), np.float32), "x", 0.5)
        identity = self.classifier.identity
        sr.encode(overlays.build_pmap([frame], identity, "1.2.3.4.6"))
        sr.encode(overlays.build_seg([frame], identity, "1.2.3.4.6"))

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

    # -- a series through its states -----------------------------------------------------
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

    # -- the report ----------------------------------------------------------------------
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
        by_uid = {i.sop_uid: i for i in insts}
        pictures = self._heatmaps(series_uid, result, headers, by_uid)
        objects, maps = self._overlays(series_uid, result, headers, by_uid)
        doc = sr.build_sr(headers, result, self.classifier.identity, series_uid, revision,
                          self.cfg.ae_title, {uid: ds for uid, (ds, _) in pictures.items()},
                          maps, {uid: classified_frame(i.frames) for uid, i in by_uid.items()
                                 if i.frames > 1})
        path = self.cfg.reports / f"{sid}-r{revision}.dcm"
        write_atomic(path, sr.encode(doc), self.cfg.reports / ".tmp")
        summary = result.summary()
        if self.state.set_report(series_uid, revision, summary, str(path),
                                 str(doc.SOPInstanceUID), self.cfg.destination is not None,
                                 [str(p) for _, p in objects]
                                 + [str(p) for _, p in pictures.values()]):
            self.log("report", series=sid, revision=revision, **summary, files_gone=gone,
                     heatmaps=len(pictures),
                     pmaps=sum(ds.SOPClassUID == overlays.PARAMETRIC_MAP for ds, _ in objects),
                     segs=sum(ds.SOPClassUID == overlays.SEGMENTATION for ds, _ in objects),
                     model_sha256=self.classifier.identity["model_sha256"],
                     s=round(time.time() - t0, 3))

    def _heatmaps(self, series_uid: str, result, headers: dict, insts: dict
                  ) -> dict[str, tuple[Dataset, Path]]:
        """Kind ``local``: the heatmap SCs of the images called a finding (the most likely
        first, at most ``cfg.heatmaps``), written under reports/ → {source SOP UID: (SC,
        file)}. An image that cannot be drawn is left out (logged, no patient data)."""
        if not self.classifier.has_heatmaps or "sc" not in self.cfg.send:
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

    def _overlays(self, series_uid: str, result, headers: dict, insts: dict
                  ) -> tuple[list[tuple[Dataset, Path]], dict[str, list[Dataset]]]:
        """Classifiers that give heatmaps: the Parametric Map and the Segmentation of the
        series as ``cfg.send`` asks, a frame per image called a finding (every one; the
        classified frame of a multi-frame object), one object where the images share a
        geometry (:func:`cossl_edge.node.overlay_frames.groups`), written under reports/ →
        ([(object, file)], {source SOP UID: [its objects]}). An image whose source cannot
        carry one (no frame of reference) or an object that fails is left out (logged, no
        patient data); the SR goes anyway."""
        kinds = [k for k in overlays.KINDS if k in self.cfg.send]
        if not self.classifier.has_heatmaps or not kinds:
            return [], {}
        clf = self.classifier
        chosen = capture.choose([r for r in result.per_image if r.sop_uid in headers],
                                clf.normal, list(clf.clf.classes), len(headers))
        sid = self.log.id(series_uid)
        frames = []
        for r, p_finding in chosen:
            src = headers[r.sop_uid]
            try:
                prob = clf.finding_map(r.heatmap, int(src.Rows), int(src.Columns))
            except Exception as e:  # noqa: BLE001 - an overlay is extra
                self.log("overlay_failed", series=sid, instance=self.log.id(r.sop_uid),
                         kind="map", error=type(e).__name__)
                continue
            frames.append(OverlayFrame(src, classified_frame(insts[r.sop_uid].frames), prob,
                                       r.label, p_finding))
        written: list[tuple[Dataset, Path]] = []
        by_source: dict[str, list[Dataset]] = {}
        for built in overlays.build_overlays(frames, kinds, clf.identity, series_uid):
            where = {"series": sid, "instance": self.log.id(built.frames[0].sop_uid),
                     "images": len(built.frames), "kind": built.kind}
            if isinstance(built.error, OverlayUnavailable):
                self.log("overlay_skipped", **where, reason=str(built.error))
                continue
            if built.dataset is None:
                self.log("overlay_failed", **where, error=type(built.error).__name__)
                continue
            ds = built.dataset
            path = self.cfg.reports / f"{sid}-{built.kind}-{self.log.id(ds.SOPInstanceUID)}.dcm"
            write_atomic(path, sr.encode(ds), self.cfg.reports / ".tmp")
            written.append((ds, path))
            for f in built.frames:
                by_source.setdefault(f.sop_uid, []).append(ds)
        return written, by_source
