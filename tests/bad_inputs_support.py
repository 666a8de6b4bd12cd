"""Shared by the bad-input tests (test_bad_inputs.py: data files and folders;
test_bad_inputs_models.py: models, classifiers, checkpoints, run files): the ``Case`` record,
the argv builders both use, the tiny models, the CLI runners, and the check every case
passes (one clear line and exit code 2, or a counted skip; no patient data printed; a
bounded peak of allocations; no user file run as code)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dicom_factory import FAKE_ID, FAKE_NAME
from support.folders import write_noise_pngs
from support.models import build_tiny_model
from typer.testing import CliRunner

from cossl_edge.cli import app
from cossl_edge.contract import PreprocessContract

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
    return write_noise_pngs(folder, n, name="ok{i}.png")


def _embed(tmp: Path, models: dict[str, Path], folder: Path, *extra: str) -> list[str]:
    return ["embed", str(models["model"]), str(folder), "--out", str(tmp / "emb.npz"), *extra]


def _pretrain(tmp: Path, folder: Path, *extra: str) -> list[str]:
    return ["pretrain", str(folder), "--out", str(tmp / "run"), "--arch", "resnet10",
            "--width", "0.125", "--image-size", "16", "--batch-size", "4", "--max-steps", "1",
            "--quiet", *extra]


def build_models(d: Path) -> dict[str, Path]:
    """The tiny model the cases run, and the same without its preprocessing contract."""
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


def check_bad_input(case: Case, models: dict[str, Path], tmp_path: Path) -> None:
    """Run ``case`` and check everything a bad input must give (the body of each module's
    ``test_bad_input``)."""
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
