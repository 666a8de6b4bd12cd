"""Real components for the DICOM node tests and benchmark, all on loopback and bounded in
time: Orthanc (the PACS), dcmtk's storescu/echoscu (the scanner), the node itself as a
``cossl-edge serve`` process; the data and the tiny model with a fitted classifier
(``node_data.py``) and the SR readers (``sr_reading.py``) are re-exported here.

Nothing is skipped when a component is missing: ``make test`` installs orthanc and dcmtk.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

# re-exported: the tests and the benchmark use them as node_support.<name>
from node_data import (  # noqa: E402, F401
    blob_image,
    blob_radius,
    make_classifier,
    make_local_classifier,
    write_blob_series,
    write_radiographs,
    write_series,
)
from sr_reading import (  # noqa: E402, F401
    content_text,
    illustrations,
    probabilities,
    referenced_instances,
)
from support.ports import free_port  # noqa: E402, F401

NODE_AE, PACS_AE, SCANNER_AE = "COSSL", "PACS", "SCANNER"


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


def uids(files: list[Path]) -> list[str]:
    """The SOPInstanceUIDs of these DICOM files, in order."""
    import pydicom

    return [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]


# -- Orthanc ----------------------------------------------------------------------------------
class Orthanc:
    """An Orthanc with a temporary configuration on free ports; REST helpers."""

    def __init__(self, folder: Path, extra_config: dict | None = None) -> None:
        self.folder = folder
        self.extra_config = dict(extra_config or {})  # e.g. DICOM TLS (test_node_tls.py)
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
            "SaveJobs": False, "StorageCompression": False, **self.extra_config,
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

    def sop_classes(self, study_uid: str, frames: bool = False) -> Counter:
        """SOP Class UID → how many instances of that class Orthanc holds in this study, or
        with ``frames`` how many frames (Number of Frames; 1 where absent). From its index:
        no file is read."""
        counts: Counter = Counter()
        for study in self.get("/studies?expand"):
            if study["MainDicomTags"].get("StudyInstanceUID") != study_uid:
                continue
            for inst in self.get(f"/studies/{study['ID']}/instances"):
                sop_class = self.get(f"/instances/{inst['ID']}/metadata/SopClassUid",
                                     raw=True).decode()
                n = int(inst["MainDicomTags"].get("NumberOfFrames") or 1) if frames else 1
                counts[sop_class] += n
        return counts

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


def sr_for(pacs: Orthanc, series_uid: str, timeout: float = 30.0,
           instances: int | None = None):
    """The SR in Orthanc whose evidence is ``series_uid`` (with ``instances`` references)."""

    def find():
        for sr in pacs.sr_datasets():
            refs = [s.SeriesInstanceUID for st in sr.CurrentRequestedProcedureEvidenceSequence
                    for s in st.ReferencedSeriesSequence]
            if series_uid in refs and (instances is None
                                       or len(referenced_instances(sr)) == instances):
                return sr
        return None

    return wait_until(find, timeout, "the SR in Orthanc", interval=0.3)


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
                 forward: str | None = None, extra: list[str] | None = None,
                 client_tls: list[str] | None = None) -> None:
        self.classifier, self.state_dir = classifier, state_dir
        self.port = port or free_port()
        self.forward, self.extra = forward, list(extra or [])
        self.client_tls = client_tls  # dcmtk's TLS options to reach a node serving TLS
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
        wait_until(lambda: self.proc.poll() is not None
                   or echo(self.port, tls=self.client_tls), timeout,
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


# -- certificates for DICOM over TLS (the ``openssl`` command) --------------------------------
CERT_EXTENSIONS = """basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:localhost, IP:127.0.0.1
"""


def _openssl(*args: str, cwd: Path) -> None:
    r = subprocess.run([require("openssl"), *args], cwd=cwd, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """(certificate, key) of a self-signed CA ``name``, valid two days."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    return folder / f"{name}.pem", folder / f"{name}.key"


def make_cert(folder: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """(certificate, key) of ``name`` signed by ``ca``, valid for localhost and 127.0.0.1,
    as a server and as a client."""
    (folder / "ext.cnf").write_text(CERT_EXTENSIONS)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
             f"{name}.key", "-out", f"{name}.csr", cwd=folder)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", f"{name}.pem",
             cwd=folder)
    return folder / f"{name}.pem", folder / f"{name}.key"


# -- dcmtk, the scanner -----------------------------------------------------------------------
def echo(port: int, calling: str = SCANNER_AE, called: str = NODE_AE,
         tls: list[str] | None = None) -> bool:
    r = subprocess.run([require("echoscu"), "-aet", calling, "-aec", called, "-to", "5",
                        *(tls or []), "127.0.0.1", str(port)], capture_output=True,
                       timeout=20)
    return r.returncode == 0


def storescu(port: int, files: list[Path], calling: str = SCANNER_AE, called: str = NODE_AE,
             timeout: float = 120.0, background: bool = False, tls: list[str] | None = None):
    """dcmtk's storescu with -v: each file's acknowledgement is in its output. ``tls``:
    its TLS options (``+tls KEY CERT +cf CA``, ``+tla +cf CA``)."""
    cmd = [require("storescu"), "-v", "-aet", calling, "-aec", called, "-to", "20",
           *(tls or []), "-nh", "127.0.0.1", str(port), *map(str, files)]
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
