"""Bad inputs through the CLI: each gives one clear line naming the file and the fix, and an
exit code (2) — or, inside a folder, a skip that is counted and reported while the rest goes
on. No case may print a patient's name or id, or allocate what a header merely declares.

Files inside a folder are named in messages by their token (``file-…``); a path the user
typed on the command line is echoed back as typed.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import FAKE_ID, FAKE_NAME, MR_STORAGE, base_dataset, mr_image, write
from make_edge_fixtures import build_tiny_model
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLSLossless
from typer.testing import CliRunner

from cossl_edge.cli import app
from cossl_edge.contract import PreprocessContract
from cossl_edge.fewshot import FewShotClassifier

CONTRACT = PreprocessContract(channels=1, size=16)
PATIENT_FILE = "Zyxwvut^Quokka.dcm"  # a file named after the patient, as exports often are
# Modules whose absence simulates a site without the [codecs] extra.
CODEC_MODULES = ("pylibjpeg", "libjpeg", "openjpeg", "jpeg_ls", "gdcm")
MAX_PEAK_BYTES = 64 << 20  # far below what any refused header declares


@dataclass
class Case:
    """argv built in a fresh folder; expected exit code; expected text; skipped count."""

    build: Callable[[Path, dict[str, Path]], list[str]]
    exit_code: int
    expect: tuple[str, ...]
    skipped: int | None = None
    no_codecs: bool = False


# -- inputs ----------------------------------------------------------------------------------
def _pngs(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(folder / f"ok{i}.png")
    return folder


def _embed(tmp: Path, models: dict[str, Path], folder: Path, *extra: str) -> list[str]:
    return ["embed", str(models["model"]), str(folder), "--out", str(tmp / "emb.npz"), *extra]


def _pretrain(tmp: Path, folder: Path, *extra: str) -> list[str]:
    return ["pretrain", str(folder), "--out", str(tmp / "run"), "--arch", "resnet10",
            "--width", "0.125", "--image-size", "16", "--batch-size", "4", "--max-steps", "1",
            "--quiet", *extra]


def _with(tmp: Path, write_bad: Callable[[Path], object]) -> Path:
    folder = _pngs(tmp / "data")
    write_bad(folder)
    return folder


def _truncated_dicom(folder: Path) -> None:
    path = mr_image(folder / PATIENT_FILE, 32, 32)
    path.write_bytes(path.read_bytes()[:-1000])


def _dicom_without_pixels(folder: Path) -> None:
    ds = base_dataset(MR_STORAGE, "MR", "nopix")
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated, ds.SamplesPerPixel, ds.PhotometricInterpretation = 16, 1, "MONOCHROME2"
    write(ds, folder / PATIENT_FILE)


def _dicom_huge_declared(folder: Path) -> None:
    path = mr_image(folder / PATIENT_FILE, 16, 16)
    raw = path.read_bytes()
    # Rows and Columns (US, explicit VR LE): tag bytes, "US", length 2, value 16 → 60000
    for tag in (b"\x28\x00\x10\x00", b"\x28\x00\x11\x00"):
        at = raw.index(tag + b"US\x02\x00")
        raw = raw[:at + 8] + (60000).to_bytes(2, "little") + raw[at + 10:]
    path.write_bytes(raw)


def _dicom_jpeg_ls(folder: Path) -> None:
    ds = base_dataset(MR_STORAGE, "MR", "jls")
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(200) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    write(ds, folder / PATIENT_FILE)


def _float_tiff(value: float) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        a = np.full((16, 16), 0.5, np.float32)
        a[3, 4] = value
        Image.fromarray(a, mode="F").save(folder / "float.tif")
    return make


def _png16(folder: Path) -> None:
    a = (np.arange(256).reshape(16, 16) * 250).astype(np.uint16)
    Image.fromarray(a).save(folder / "deep.png")
    with Image.open(folder / "deep.png") as im:
        assert im.mode.startswith("I")  # really 16-bit on disk


def _other_model_classifier(tmp: Path, models: dict[str, Path]) -> list[str]:
    clf = FewShotClassifier.fit(np.eye(4)[:2].repeat(2, 0), ["a", "a", "b", "b"])
    clf.bind_model("0" * 64, models["model"], CONTRACT.to_dict())
    clf.save(tmp / "clf.json")
    return ["fewshot", "predict", str(tmp / "clf.json"), str(_pngs(tmp / "data")), "--out",
            str(tmp / "p.csv"), "--model", str(models["model"])]


def _malformed_classifier(tmp: Path, models: dict[str, Path]) -> list[str]:
    (tmp / "clf.json").write_text(json.dumps({"schema_version": 1, "kind": "magic",
                                              "classes": "ab", "params": {}}))
    return ["fewshot", "predict", str(tmp / "clf.json"), str(_pngs(tmp / "data")), "--out",
            str(tmp / "p.csv"), "--model", str(models["model"])]


def _corrupt_checkpoint(tmp: Path, models: dict[str, Path]) -> list[str]:
    first = _pretrain(tmp, _pngs(tmp / "data", 8))
    assert CliRunner().invoke(app, first).exit_code == 0
    ckpt = tmp / "run" / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:2000])
    return [*first[:-2], "2", "--quiet", "--resume"]


class _Payload:
    """Unpickling this would run code: it touches a file named by the test."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _resume_args(tmp: Path, checkpoint: object, config_text: str | None = None) -> list[str]:
    """A run directory as pretrain writes it, with the given checkpoint / config.json."""
    import torch

    from cossl_edge.training.config import PretrainConfig

    run = tmp / "run"
    (run / "checkpoints").mkdir(parents=True)
    config = PretrainConfig(arch="resnet10", width=0.125, batch_size=4, contract=CONTRACT)
    config.save(run / "config.json")
    if config_text is not None:
        (run / "config.json").write_text(config_text)
    torch.save(checkpoint, run / "checkpoints" / "last.pt")
    return [*_pretrain(tmp, _pngs(tmp / "data", 8)), "--resume"]


def _pickled_checkpoint(tmp: Path, models: dict[str, Path]) -> list[str]:
    return _resume_args(tmp, {"model": _Payload(tmp / "code-ran")})


def _labels_escaping(tmp: Path, models: dict[str, Path]) -> list[str]:
    support = _pngs(tmp / "support", 4)
    _pngs(tmp / "elsewhere")
    (tmp / "labels.csv").write_text("path,label\nok0.png,a\nok1.png,b\n../elsewhere/ok0.png,b\n")
    return ["fewshot", "fit", str(models["model"]), str(support), "--labels",
            str(tmp / "labels.csv"), "--out", str(tmp / "clf.json")]


def _symlink_out(tmp: Path, models: dict[str, Path]) -> list[str]:
    outside = _pngs(tmp / "outside", 1) / "ok0.png"
    folder = _pngs(tmp / "data")
    (folder / "link.png").symlink_to(outside)
    return _embed(tmp, models, folder)


def _channels_contract(tmp: Path, models: dict[str, Path]) -> list[str]:
    rgb = PreprocessContract(channels=3, size=16)
    (tmp / "contract.json").write_text(rgb.to_json())
    return _embed(tmp, models, _pngs(tmp / "data"), "--contract", str(tmp / "contract.json"))


CASES: dict[str, Case] = {
    "missing folder": Case(lambda t, m: _embed(t, m, t / "absent"), 2,
                           ("absent: no such file or folder", "check the path")),
    "missing folder (pretrain)": Case(lambda t, m: _pretrain(t, t / "absent"), 2,
                                      ("absent: no such file or folder",)),
    "empty folder": Case(lambda t, m: _pretrain(t, (t / "empty").mkdir() or t / "empty"), 2,
                         ("no images found (0 files skipped)", "point to a folder of")),
    "folder of non-images": Case(
        lambda t, m: _pretrain(t, _notes(t / "notes")), 2,
        ("no images found (2 files skipped)", "PNG/JPEG/TIFF, DICOM or video")),
    "zero-byte file": Case(lambda t, m: _embed(t, m, _with(t, lambda f: (f / "z.png")
                                                               .write_bytes(b""))),
                           0, ("empty file (0 bytes)",), skipped=1),
    "zero-byte DICOM": Case(lambda t, m: _embed(t, m, _with(t, lambda f: (f / PATIENT_FILE)
                                                                .write_bytes(b""))),
                            0, ("empty file (0 bytes)",), skipped=1),
    "truncated DICOM": Case(lambda t, m: _embed(t, m, _with(t, _truncated_dicom)), 0,
                            ("truncated: declares 2048 bytes of pixel data",), skipped=1),
    "DICOM without pixel data": Case(lambda t, m: _embed(t, m, _with(t, _dicom_without_pixels)),
                                     0, ("no pixel data in the file",), skipped=1),
    "transfer syntax without codecs": Case(
        lambda t, m: _embed(t, m, _with(t, _dicom_jpeg_ls)), 0,
        ("'JPEG-LS Lossless Image Compression' needs a decoder that is not installed",
         "pip install 'cossl-edge[codecs]'"), skipped=1, no_codecs=True),
    "Rows/Columns far beyond the data": Case(
        lambda t, m: _embed(t, m, _with(t, _dicom_huge_declared)), 0,
        ("declares 60000×60000×1 pixels per frame, beyond any real image",), skipped=1),
    "NaN in a float TIFF": Case(lambda t, m: _embed(t, m, _with(t, _float_tiff(np.nan))), 0,
                                ("NaN or infinite values", "clean the file"), skipped=1),
    "inf in a float TIFF": Case(lambda t, m: _embed(t, m, _with(t, _float_tiff(np.inf))), 0,
                                ("NaN or infinite values",), skipped=1),
    "16-bit PNG (accepted)": Case(lambda t, m: _embed(t, m, _with(t, _png16)), 0,
                                  ("embedded 3 samples",), skipped=0),
    "wrong channel count for the model": Case(
        _channels_contract, 2, ("contract.json", "3 channel", "takes 1")),
    "ONNX file without the contract": Case(
        lambda t, m: ["embed", str(m["bare"]), str(_pngs(t / "data")), "--out",
                      str(t / "e.npz")], 2,
        ("bare.onnx: the model carries no preprocessing contract", "pass --contract FILE")),
    "few-shot JSON for another model": Case(
        _other_model_classifier, 2, ("clf.json: fitted on another model", "refit")),
    "few-shot JSON of the wrong shape": Case(
        _malformed_classifier, 2, ("clf.json: malformed classifier file", "refit")),
    "corrupt checkpoint": Case(_corrupt_checkpoint, 2,
                               ("last.pt: corrupt or unreadable checkpoint", "epoch-*.pt over it")),
    "checkpoint carrying a pickled object": Case(
        _pickled_checkpoint, 2, ("last.pt: corrupt or unreadable checkpoint (Unpickling",)),
    "corrupt config.json on resume": Case(
        lambda t, m: _resume_args(t, {}, "{not json"), 2,
        ("config.json: corrupt run configuration (JSONDecodeError)", "without --resume")),
    "labels CSV path escaping the folder": Case(
        _labels_escaping, 2, ("labels.csv", "line 4", "outside the folder")),
    "symlink out of the folder": Case(_symlink_out, 0, ("links outside the folder",),
                                      skipped=1),
}


def _notes(folder: Path) -> Path:
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    (folder / "table.csv").write_text("a,b\n1,2\n")
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    return {"model": build_tiny_model(d / "model.onnx", CONTRACT, dim=8),
            "bare": build_tiny_model(d / "bare.onnx", CONTRACT, dim=8, with_contract=False)}


def _run_without_codecs(argv: list[str]) -> tuple[int, str]:
    """The CLI in a fresh interpreter where the optional decoders cannot be imported."""
    code = ("import sys\n"
            f"for m in {CODEC_MODULES!r}: sys.modules[m] = None\n"
            "from cossl_edge.cli import app\n"
            "app(sys.argv[1:], prog_name='cossl-edge')\n")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          env=dict(os.environ, COLUMNS="200"), timeout=120)
    return done.returncode, done.stdout + done.stderr


def _run(argv: list[str], trace: bool) -> tuple[int, str, int]:
    """Exit code, output, and the peak of Python allocations (numpy's included)."""
    if trace:
        tracemalloc.start()
    try:
        result = CliRunner().invoke(app, argv, env={"COLUMNS": "200"})
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
    finally:
        tracemalloc.stop()
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception  # an unhandled error is a failure of its own
    return result.exit_code, result.output, peak


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, models, tmp_path):
    case = CASES[name]
    argv = case.build(tmp_path, models)
    if case.no_codecs:
        code, output = _run_without_codecs(argv)
    else:
        # (pretrain's first import of torch is large, and slow to trace, by itself)
        code, output, peak = _run(argv, trace=argv[0] != "pretrain")
        assert peak < MAX_PEAK_BYTES, f"{peak / 2**20:.0f} MiB traced"
    flat = " ".join(output.split())
    assert code == case.exit_code, output
    for text in case.expect:
        assert text in flat, output
    for secret in (FAKE_NAME, FAKE_ID, "Zyxwvut", "Quokka"):
        assert secret not in output
    if case.exit_code:
        assert len(output.strip().splitlines()) == 1 and output.startswith("error: "), output
    if case.skipped is not None:
        assert re.search(rf"; skipped {case.skipped}\b", flat), output
    if case.skipped:
        assert re.search(r"file-[0-9a-f]{10}", flat), "the skipped file is named by token"
    assert not (tmp_path / "code-ran").exists(), "a user file ran code when loaded"


PRODUCT = [Path(__file__).parents[1] / d for d in ("cossl_edge", "training", "export")]


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    found = []
    for folder in PRODUCT:
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(name):
                    found.append((path, node))
    return found


def _keyword(call: ast.Call, name: str):
    return next((ast.literal_eval(k.value) for k in call.keywords if k.arg == name), None)


def test_no_user_file_is_unpickled():
    """torch.load only with weights_only=True, np.load only with allow_pickle=False, and no
    pickle module at all, anywhere in the product."""
    loads = _calls("torch.load")
    assert loads, "the scan finds nothing: check PRODUCT"
    for path, call in loads:
        assert _keyword(call, "weights_only") is True, f"{path}:{call.lineno}"
    for path, call in _calls("np.load"):
        assert _keyword(call, "allow_pickle") is False, f"{path}:{call.lineno}"
    for folder in PRODUCT:
        for path in folder.rglob("*.py"):
            assert not re.search(r"^\s*(import|from) (c?pickle|dill|joblib)\b",
                                 path.read_text(), re.M), path
