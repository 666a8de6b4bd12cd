"""Real components for the DICOM node tests and benchmark, all on loopback and bounded in
time: Orthanc (the PACS), dcmtk's storescu/echoscu (the scanner), the node itself as a
``cossl-edge serve`` process, and a tiny model with a fitted classifier.

Nothing is skipped when a component is missing: ``make test`` installs orthanc and dcmtk.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from clinical_examples import phantoms as ph  # noqa: E402

NODE_AE, PACS_AE, SCANNER_AE = "COSSL", "PACS", "SCANNER"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} not found: `make test` installs it (apt-get install orthanc dcmtk)"
    return path


def wait_until(check, timeout: float, what: str, interval: float = 0.1):
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# -- Orthanc ----------------------------------------------------------------------------------
class Orthanc:
    """An Orthanc with a temporary configuration on free ports; REST helpers."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.dicom_port, self.http_port = free_port(), free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> Orthanc:
        binary = require("Orthanc")
        self.folder.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "cossl-test-pacs", "StorageDirectory": str(self.folder / "db"),
            "IndexDirectory": str(self.folder / "db"), "Plugins": [],
            "HttpServerEnabled": True, "HttpPort": self.http_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomServerEnabled": True, "DicomAet": PACS_AE,
            "DicomPort": self.dicom_port, "DicomCheckCalledAet": False,
            "ConcurrentJobs": 1, "HttpThreadsCount": 4, "StableAge": 1,
            "SaveJobs": False, "StorageCompression": False,
        }
        cfg = self.folder / "orthanc.json"
        cfg.write_text(json.dumps(config))
        self.log = (self.folder / "orthanc.log").open("wb")
        self.proc = subprocess.Popen([binary, str(cfg)], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.folder)
        wait_until(lambda: self.proc.poll() is not None or self._alive(), timeout,
                   "Orthanc to answer")
        assert self.proc.poll() is None, (self.folder / "orthanc.log").read_text()[-2000:]
        return self

    def _alive(self) -> bool:
        try:
            self.get("/system")
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None:
            self.log.close()

    def get(self, path: str, raw: bool = False):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as r:
            data = r.read()
        return data if raw else json.loads(data)

    def instances(self) -> list[str]:
        return self.get("/instances")

    def sr_datasets(self) -> list:
        """Every SR instance stored, as pydicom datasets (downloaded whole)."""
        return self.datasets(lambda tags: tags.get("Modality") == "SR")

    def datasets(self, keep) -> list:
        """The instances whose simplified tags ``keep`` accepts, as pydicom datasets."""
        import io

        import pydicom

        out = []
        for iid in self.instances():
            if keep(self.get(f"/instances/{iid}/simplified-tags")):
                out.append(pydicom.dcmread(io.BytesIO(self.get(f"/instances/{iid}/file",
                                                               raw=True))))
        return out


@contextmanager
def running_orthanc(folder: Path):
    pacs = Orthanc(folder).start()
    try:
        yield pacs
    finally:
        pacs.stop()


# -- the node ---------------------------------------------------------------------------------
class NodeProcess:
    """``cossl-edge serve`` in a subprocess (so that it can be killed with SIGKILL)."""

    def __init__(self, classifier: Path, state_dir: Path, port: int | None = None,
                 forward: str | None = None, extra: list[str] | None = None) -> None:
        self.classifier, self.state_dir = classifier, state_dir
        self.port = port or free_port()
        self.forward, self.extra = forward, list(extra or [])
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 60.0) -> NodeProcess:
        cmd = [sys.executable, "-m", "cossl_edge", "serve", str(self.classifier),
               "--port", str(self.port), "--ae-title", NODE_AE, "--host", "127.0.0.1",
               "--state-dir", str(self.state_dir), *self.extra]
        if self.forward:
            cmd += ["--forward", self.forward, "--retry-base", "0.2", "--retry-max", "2"]
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.err = (self.state_dir / f"stderr-{self.starts}.txt").open("wb")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(cmd, stdout=self.err, stderr=subprocess.STDOUT, env=env)
        wait_until(lambda: self.proc.poll() is not None or echo(self.port), timeout,
                   "the node to answer C-ECHO")
        assert self.proc.poll() is None, self.stderr()
        return self

    def stderr(self) -> str:
        files = sorted(self.state_dir.glob("stderr-*.txt"))
        return "\n".join(f.read_text(errors="replace")[-3000:] for f in files)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.err.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.err.close()

    def events(self) -> list[dict]:
        path = self.state_dir / "node.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def db(self):
        import sqlite3

        con = sqlite3.connect(self.state_dir / "state.sqlite", timeout=10)
        con.row_factory = sqlite3.Row
        return con


# -- dcmtk, the scanner -----------------------------------------------------------------------
def echo(port: int, calling: str = SCANNER_AE, called: str = NODE_AE) -> bool:
    r = subprocess.run([require("echoscu"), "-aet", calling, "-aec", called, "-to", "5",
                        "127.0.0.1", str(port)], capture_output=True, timeout=20)
    return r.returncode == 0


def storescu(port: int, files: list[Path], calling: str = SCANNER_AE, called: str = NODE_AE,
             timeout: float = 120.0, background: bool = False):
    """dcmtk's storescu with -v: each file's acknowledgement is in its output."""
    cmd = [require("storescu"), "-v", "-aet", calling, "-aec", called, "-to", "20",
           "-nh", "127.0.0.1", str(port), *map(str, files)]
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def acknowledged(output: str) -> tuple[list[str], list[str]]:
    """(files answered Success, files answered another status) in storescu -v output."""
    ok, bad, current = [], [], None
    for line in output.splitlines():
        if "Sending file:" in line:
            current = line.split("Sending file:", 1)[1].strip()
        elif "Received Store Response" in line and current is not None:
            (ok if "(Success)" in line else bad).append(current)
            current = None
    return ok, bad


# -- data and model ---------------------------------------------------------------------------
def write_series(folder: Path, n: int, key: str, finding_every: int = 0, patient: int = 0,
                 seed: int = 0) -> list[Path]:
    """A CT phantom series of n slices (96 px); every ``finding_every``-th slice a nodule."""
    findings = ["nodule" if finding_every and i % finding_every == 0 else "no_finding"
                for i in range(n)]
    return [p for p, _ in ph.write_ct_series(folder, ph.fake_patient(patient, seed), findings,
                                             seed, key)]


def write_radiographs(folder: Path, findings: list[str], key: str, seed: int = 0,
                      patient: int = 50) -> list[Path]:
    out = []
    for i, finding in enumerate(findings):
        out.append(ph.write_radiograph(folder / f"{key}_{i:04d}.dcm",
                                       ph.fake_patient(patient + i, seed), finding, seed,
                                       f"{key}-{i}", "CR", "MONOCHROME2"))
    return out


def make_classifier(folder: Path, size: int = 32, model: Path | None = None) -> Path:
    """A tiny fixed ONNX encoder (tests/make_edge_fixtures.py) and a prototype classifier
    fitted on CT phantom slices (no_finding, nodule, effusion) through the node's own
    reading path: a few seconds, no training."""
    from make_edge_fixtures import build_tiny_model

    from cossl_edge.contract import PreprocessContract
    from cossl_edge.encoder import open_with_contract
    from cossl_edge.fewshot import FewShotClassifier

    folder.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = build_tiny_model(folder / "model.onnx",
                                 PreprocessContract(channels=1, size=size), dim=32)
    encoder = open_with_contract(model, None, 1, False)
    support = folder / "support"
    paths, labels = [], []
    for finding in ph.FINDINGS:
        for p, lab in ph.write_ct_series(support / finding, ph.fake_patient(90, 1),
                                         [finding] * 6, 1, f"support-{finding}"):
            paths.append(p)
            labels.append(lab)
    from cossl_edge.dicom.pixels import read_frame

    x = encoder.embed_arrays([read_frame(p, None, encoder.contract.window) for p in paths])
    clf = FewShotClassifier.fit(x, labels, kind="proto", abstain_threshold=0.0)
    clf.bind_model(encoder.sha256, model, encoder.contract.to_dict())
    return clf.save(folder / "classifier.json")


def blob_image(kind: str, rng, size: int = 64) -> tuple[np.ndarray, tuple[int, int] | None]:
    """tests/test_local_fewshot.py's blob images at ``size`` px: diagonal stripes and noise;
    ``bright`` adds a small bright disk (radius ~size/13). Returns the image in [0, 1] and the
    disk's centre (row, column), None for ``normal``."""
    k = size / 32
    yy, xx = np.mgrid[:size, :size]
    img = 0.4 + 0.1 * np.sin(2 * np.pi * (xx + yy) / (7 * k) + rng.uniform(0, 2 * np.pi))
    img += 0.05 * rng.random((size, size))
    if kind == "normal":
        return img.astype(np.float32), None
    cy, cx = (int(v) for v in rng.integers(round(6 * k), size - round(6 * k), 2))
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 6 * k * k] = 0.95
    return img.astype(np.float32), (cy, cx)


def write_blob_series(folder: Path, kinds: list[str], key: str, patient: int = 70,
                      seed: int = 0) -> tuple[list[Path], list[tuple[int, int] | None]]:
    """A CT series of blob images (stored 0–1000, window 500/1000: read back in [0, 1]) with
    the phantoms' full patient and study module; (files, disk centres)."""
    from dicom_factory import CT_STORAGE

    rng = np.random.default_rng(seed)
    files, centres = [], []
    for i, kind in enumerate(kinds):
        img, centre = blob_image(kind, rng)
        ds = ph._dataset(CT_STORAGE, "CT", ph.fake_patient(patient, seed), f"{key}-study",
                         f"{key}-series", f"{key}-{i}")
        ph._set_pixels(ds, np.round(img * 1000).astype(np.uint16), "MONOCHROME2", 12)
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "HU"
        ds.WindowCenter, ds.WindowWidth = 500, 1000
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, 2.0 * i]
        ds.InstanceNumber = i + 1
        files.append(ph._save(ds, folder / f"{key}_{i:03d}.dcm"))
        centres.append(centre)
    return files, centres


def make_local_classifier(folder: Path, size: int = 32) -> Path:
    """A local few-shot classifier (kind ``local``, normal vs bright) on a fixed convolution
    exported with its local map (tests/make_edge_fixtures.py ``build_local_model``), fitted
    on blob images read through the node's own path: under a second, no training."""
    from make_edge_fixtures import build_local_model

    from cossl_edge.contract import PreprocessContract
    from cossl_edge.dicom.pixels import read_frame
    from cossl_edge.encoder import Encoder
    from cossl_edge.fewshot import FewShotClassifier

    folder.mkdir(parents=True, exist_ok=True)
    contract = PreprocessContract(channels=1, size=size)
    model = build_local_model(folder / "local.onnx", contract)
    encoder = Encoder(model, threads=1)
    kinds = ["normal"] * 5 + ["bright"] * 5
    files, _ = write_blob_series(folder / "support", kinds, "local-support", patient=91, seed=3)
    x = np.stack([contract.prepare(read_frame(p, None, contract.window)) for p in files])
    clf = FewShotClassifier.fit(encoder.run_local(contract.normalize(x)), kinds, kind="local",
                                centering=encoder.centering, abstain_threshold=0.0)
    clf.bind_model(encoder.sha256, model, contract.to_dict())
    return clf.save(folder / "classifier.json")


def illustrations(sr) -> list[str]:
    """SOP instance UIDs of the SR's IMAGE items named "Illustration of ROI", depth first."""
    out = []

    def walk(items):
        for it in items:
            if (it.get("ValueType") == "IMAGE" and "ConceptNameCodeSequence" in it
                    and it.ConceptNameCodeSequence[0].CodeValue == "121200"):
                out.append(str(it.ReferencedSOPSequence[0].ReferencedSOPInstanceUID))
            walk(it.get("ContentSequence", []))

    walk(sr.get("ContentSequence", []))
    return out


def referenced_instances(sr) -> list[str]:
    """SOP instance UIDs in the SR's evidence (CurrentRequestedProcedureEvidenceSequence)."""
    uids = []
    for study in sr.get("CurrentRequestedProcedureEvidenceSequence", []):
        for series in study.ReferencedSeriesSequence:
            uids += [str(i.ReferencedSOPInstanceUID) for i in series.ReferencedSOPSequence]
    return uids


def content_text(sr) -> list[tuple[str, str]]:
    """(concept name, value) of every content item of the SR, depth first."""
    out = []

    def walk(items):
        for it in items:
            name = it.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in it \
                else ""
            if "ConceptCodeSequence" in it:
                out.append((name, str(it.ConceptCodeSequence[0].CodeMeaning)))
            elif "MeasuredValueSequence" in it:
                out.append((name, str(it.MeasuredValueSequence[0].NumericValue)))
            elif "TextValue" in it:
                out.append((name, str(it.TextValue)))
            elif "UID" in it:
                out.append((name, str(it.UID)))
            walk(it.get("ContentSequence", []))

    walk(sr.get("ContentSequence", []))
    return out


def probabilities(values) -> np.ndarray:
    return np.asarray([float(v) for v in values])
