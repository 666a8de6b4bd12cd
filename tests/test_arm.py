"""The installed wheel's edge runtime on aarch64, under user-mode emulation, against x86.

``make test-arm`` builds the aarch64 environment (``tests/arm/build_env.sh``, cached under
``build/arm/``: Debian's qemu-user-static, Debian's arm64 CPython, PyPI's aarch64 wheels of the
lock's versions and the project's wheel) and runs this module; the main test run skips it
only when that environment is absent.

Here, on x86, the full environment exports a tiny run (``tests/make_edge_fixtures.py``) to
fp32 and to int8 for this CPU (``--target auto``) and for ``--target arm``, once as
pretraining leaves the run (its anomaly map keeps most of the int8 file in fp32) and once
without its normal model (the whole network in int8). The same
``embed``, ``fewshot fit`` and ``fewshot predict`` commands (PNG and DICOM files) then run in
one process on x86 and in one emulated aarch64 process per CPU model: a Cortex-A72
(ARMv8.0, no dot-product instructions: Raspberry Pi 4) and a Cortex-A76 (ARMv8.2 with them:
Raspberry Pi 5), each described in its own /proc/cpuinfo, so onnxruntime picks its int8
kernels for that core: without and with the dot-product instructions. Checked:
fp32 embeddings within cosine 0.999 of x86's, int8 within the agreement that its export
report promises, the same predicted labels; and that the emulated process really was aarch64
with the arm root's onnxruntime. Timings under emulation mean nothing and are not taken.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
ARM = Path(os.environ.get("COSSL_ARM_DIR", CHECKOUT / "build" / "arm"))
ENV_FILE = ARM / "env.json"
SALT = "test-arm"
FP32_MIN_COSINE = 0.999
# int8 on aarch64 against fp32 on x86, over the very images its export report measured
# (x86 int8 against x86 fp32): the report's mean and minimum cosine, less this much (room for
# the two machines' int8 kernels to round differently; measured: 1e-10)
INT8_SLACK = 5e-4
EM_AARCH64 = 183  # ELF e_machine

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ENV_FILE.is_file(), reason=f"the aarch64 environment is absent "
                       f"({ENV_FILE} not found): `make test-arm` builds it and runs this test"),
]

# every command in one process, then where the runtime came from and what machine it was
SCRIPT = """
import json, platform, sys
import cossl_edge, numpy, onnxruntime
from onnxruntime.capi import onnxruntime_pybind11_state as native
from cossl_edge.cli import app
for args in json.loads(sys.argv[1]):
    app(args, standalone_mode=False)
print(json.dumps({"machine": platform.machine(), "python": platform.python_version(),
                  "onnxruntime": onnxruntime.__file__, "native": native.__file__,
                  "onnxruntime_version": onnxruntime.__version__, "numpy": numpy.__version__,
                  "cossl_edge": cossl_edge.__file__}))
"""


def _dicom_class_images(root: Path, classes: int, per_class: int, seed: int) -> None:
    """8-bit DICOM files beside the PNGs of ``write_class_folders``, same class statistics."""
    from dicom_factory import CR_STORAGE, base_dataset, set_pixels, write

    rng = np.random.default_rng(seed)
    for k in range(classes):
        for i in range(per_class):
            img = rng.normal(40 + 70 * k, 6 + 8 * k, size=(20, 20)).clip(0, 255)
            ds = base_dataset(CR_STORAGE, "CR", f"{root.name}-{k}-{i}", f"{root.name}-{k}")
            set_pixels(ds, img.astype(np.uint8))
            ds.WindowCenter, ds.WindowWidth = 128, 256
            write(ds, root / f"class_{k}" / f"scan_{i:03d}.dcm")


def _quantized_nodes(path: Path) -> int:
    import onnx

    return sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(path)).graph.node)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """Images (PNG and DICOM) and the models, exported on x86."""
    pytest.importorskip("torch", reason="the exporter (torch) is not installed")
    from dicom_factory import mixed_folder
    from make_edge_fixtures import export_tiny_run
    from support.folders import write_class_folders

    from cossl_edge import rundir
    from cossl_edge.export import export_run

    base = tmp_path_factory.mktemp("arm")
    data = base / "data"
    labelled = write_class_folders(data / "labelled", classes=3, per_class=8)
    _dicom_class_images(labelled, classes=3, per_class=2, seed=3)
    query = write_class_folders(data / "query", classes=3, per_class=3, seed=1)
    _dicom_class_images(query, classes=3, per_class=2, seed=4)
    mixed_folder(query / "mixed")  # CT series, MR, MONOCHROME1 CR, multi-frame, RGB US, RLE
    run = export_tiny_run(base / "x86", labelled).parent
    # the run as pretraining leaves it has a normal model, whose anomaly map keeps most of the
    # network in fp32 in the int8 file; without it the whole network is int8
    plain = base / "x86" / "run-embedding-only"
    shutil.copytree(run, plain, ignore=shutil.ignore_patterns(rundir.NORMAL_MODEL, "*.onnx",
                                                              "export-report.json"))
    models = {}
    for source, suffix in ((run, ""), (plain, ", embedding only")):
        for target in ("auto", "arm"):
            out = base / f"export-{target}{'-plain' if suffix else ''}"
            # every labelled image calibrates and is measured: the report's agreement is
            # over exactly the images the test compares
            report = export_run(source, out_dir=out, calibration=labelled,
                                calibration_count=10_000, target=target, measure_latency=False)
            if not models:
                models["fp32"] = {"file": out / "encoder.onnx"}
            models[f"int8 {report['int8']['target']}{suffix}"] = {
                "file": out / "encoder.int8.onnx", "report": report["int8_agreement"],
                "calibration_images": report["calibration_images"],
                "int8_nodes": _quantized_nodes(out / "encoder.int8.onnx")}
    return {"base": base, "data": data, "labelled": labelled, "query": query,
            "models": models}


def _commands(exported: dict, out: Path) -> list[list[str]]:
    commands = []
    for i, info in enumerate(exported["models"].values()):
        model, o = str(info["file"]), out / f"m{i}"
        commands += [
            ["embed", model, str(exported["data"]), "--out", str(o / "emb.npz"),
             "--id-map", str(o / "ids.csv"), "--threads", "2"],
            ["fewshot", "fit", model, str(exported["labelled"]), "--out", str(o / "clf.json"),
             "--classifier", "logreg"],
            ["fewshot", "predict", str(o / "clf.json"), str(exported["query"]),
             "--out", str(o / "pred.csv")],
        ]
    return commands


def _run(argv: list[str], exported: dict, out: Path) -> dict:
    out.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env |= {"COSSL_EDGE_SALT": SALT, "COLUMNS": "120"}
    run = subprocess.run([*argv, "-c", SCRIPT, json.dumps(_commands(exported, out))],
                         capture_output=True, text=True, timeout=900, cwd=out, env=env)
    assert run.returncode == 0, (argv, run.stdout[-2000:], run.stderr[-4000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def outputs(exported) -> dict:
    """Every command on x86 (this interpreter) and on each emulated aarch64 CPU."""
    env = json.loads(ENV_FILE.read_text())
    python = str(ARM / env["python"])
    runs = {"x86_64": [sys.executable]}
    for cpu, root in env["cpus"].items():
        # -I: no user site-packages, no PYTHON* variables: only the arm root's packages
        runs[cpu] = [env["qemu"], "-cpu", cpu, "-L", str(ARM / root), python, "-I"]
    base = exported["base"]
    with ThreadPoolExecutor(max_workers=max(1, min(len(runs), os.cpu_count() or 1))) as pool:
        futures = {name: pool.submit(_run, argv, exported, base / name)
                   for name, argv in runs.items()}
        results = {name: (f.result(), base / name) for name, f in futures.items()}
    return {"env": env, "results": results}


def _embeddings(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "emb.npz", allow_pickle=False) as z:
        return {str(i): v for i, v in zip(z["ids"], z["embeddings"], strict=True)}


def _cosines(a: dict[str, np.ndarray], b: dict[str, np.ndarray],
             ids: list[str] | None = None) -> np.ndarray:
    ids = sorted(a) if ids is None else ids
    x = np.array([a[i] for i in ids], np.float64)
    y = np.array([b[i] for i in ids], np.float64)
    return (x * y).sum(1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1),
                                       1e-12)


def _labels(folder: Path) -> dict[str, str]:
    with (folder / "pred.csv").open() as f:
        return {r["id"]: r["label"] for r in csv.DictReader(f)}


def _elf_machine(path: str) -> int:
    with open(path, "rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF", path
    return int.from_bytes(head[18:20], "little")


def test_the_emulated_process_is_aarch64_with_the_arm_roots_runtime(outputs):
    root = (ARM / "root").resolve()
    site = (ARM / outputs["env"]["site_packages"]).resolve()
    x86, _ = outputs["results"]["x86_64"]
    assert x86["machine"] == "x86_64"
    for cpu, (info, _) in outputs["results"].items():
        if cpu == "x86_64":
            continue
        assert info["machine"] == "aarch64", (cpu, info)
        for module in ("onnxruntime", "native", "cossl_edge"):
            assert site in Path(info[module]).resolve().parents, (cpu, module, info[module])
        assert _elf_machine(info["native"]) == EM_AARCH64, info["native"]
        assert root in Path(info["native"]).resolve().parents
        # the lock's onnxruntime and numpy, or the versions env.json says differ
        packages = outputs["env"]["packages"]
        assert info["onnxruntime_version"] == packages["onnxruntime"]
        assert info["numpy"] == packages["numpy"]


def test_embeddings_and_labels_agree_with_x86(exported, outputs):
    _, x86_out = outputs["results"]["x86_64"]
    fp32_x86 = _embeddings(x86_out / "m0")
    with (x86_out / "m0" / "ids.csv").open() as f:
        labelled_ids = [r["id"] for r in csv.DictReader(f) if r["path"].startswith("labelled/")]
    rows, failures = [], []
    for cpu, (_, out) in outputs["results"].items():
        if cpu == "x86_64":
            continue
        for i, (name, model) in enumerate(exported["models"].items()):
            arm, x86 = _embeddings(out / f"m{i}"), _embeddings(x86_out / f"m{i}")
            assert sorted(arm) == sorted(x86), (cpu, name, "different images embedded")
            cos = _cosines(arm, x86)
            arm_labels, x86_labels = _labels(out / f"m{i}"), _labels(x86_out / f"m{i}")
            same = sum(arm_labels[k] == v for k, v in x86_labels.items())
            row = {"cpu": cpu, "model": name, "images": len(cos),
                   "cosine_to_x86_mean": float(cos.mean()), "cosine_to_x86_min": float(cos.min()),
                   "max_abs_diff": float(max(np.abs(arm[k] - x86[k]).max() for k in arm)),
                   "labels_same": f"{same}/{len(x86_labels)}"}
            if sorted(arm_labels) != sorted(x86_labels) or same != len(x86_labels):
                failures.append(f"{cpu} {name}: predicted labels {same}/{len(x86_labels)} same")
            if name == "fp32":
                if cos.min() < FP32_MIN_COSINE:
                    failures.append(f"{cpu} fp32: cosine to x86 {cos.min():.6f} < "
                                    f"{FP32_MIN_COSINE}")
            else:
                promised = model["report"]
                assert model["calibration_images"] == len(labelled_ids)
                to_fp32 = _cosines(arm, fp32_x86, labelled_ids)
                on_x86 = _cosines(x86, fp32_x86, labelled_ids)
                row |= {"quantize_nodes": model["int8_nodes"],
                        "int8_vs_fp32_mean": float(to_fp32.mean()),
                        "int8_vs_fp32_min": float(to_fp32.min()),
                        "promised_mean": promised["cosine_mean"],
                        "promised_min": promised["cosine_min"],
                        "x86_int8_vs_fp32_mean": float(on_x86.mean())}
                if (to_fp32.mean() < promised["cosine_mean"] - INT8_SLACK
                        or to_fp32.min() < promised["cosine_min"] - INT8_SLACK):
                    failures.append(f"{cpu} {name}: int8 vs fp32 cosine mean/min "
                                    f"{to_fp32.mean():.5f}/{to_fp32.min():.5f}, the report "
                                    f"promises {promised['cosine_mean']:.5f}/"
                                    f"{promised['cosine_min']:.5f}")
            rows.append(row)
    _print_and_record(rows, outputs)
    assert not failures, failures


def _print_and_record(rows: list[dict], outputs: dict) -> None:
    """The figures for docs/edge.md: printed (make test-arm runs pytest -s) and written to
    build/arm/agreement.json."""
    x86, _ = outputs["results"]["x86_64"]
    arm = next(info for cpu, (info, _) in outputs["results"].items() if cpu != "x86_64")
    lines = [f"x86_64 (Python {x86['python']}, onnxruntime {x86['onnxruntime_version']}) vs "
             f"aarch64 under qemu (Python {arm['python']}, onnxruntime "
             f"{arm['onnxruntime_version']}, numpy {arm['numpy']})",
             "1 - cosine to x86 (mean, max), largest |difference|, labels the same as x86's; "
             "int8: cosine to x86's fp32, mean/min (the export report's)",
             f"{'cpu':<11} {'model':<31} {'n':>3} {'1-cos mean':>10} {'1-cos max':>10} "
             f"{'max|diff|':>9} {'labels':>7}  int8 vs fp32"]
    for r in rows:
        line = (f"{r['cpu']:<11} {r['model']:<31} {r['images']:>3} "
                f"{1 - r['cosine_to_x86_mean']:>10.1e} {1 - r['cosine_to_x86_min']:>10.1e} "
                f"{r['max_abs_diff']:>9.2e} {r['labels_same']:>7}")
        if "promised_mean" in r:
            line += (f"  {r['int8_vs_fp32_mean']:.5f}/{r['int8_vs_fp32_min']:.5f} "
                     f"({r['promised_mean']:.5f}/{r['promised_min']:.5f})")
        lines.append(line)
    print("\n" + "\n".join(lines))
    record = {"x86_64": x86, "aarch64": arm, "rows": rows,
              "differs_from_lock": outputs["env"]["differs_from_lock"]}
    (ARM / "agreement.json").write_text(json.dumps(record, indent=1))
