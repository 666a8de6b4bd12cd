"""The steps of the demo (``clinical_examples/demo.py``): its settings, the phantom data,
pretraining, the two int8 exports and the few-shot evaluation.

Needs the ``[train,export]`` extras; torch is imported inside the functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from clinical_examples import phantoms as phantom_data
from cossl_edge.progress import ProgressBars
from cossl_edge.training.method_list import DEFAULT_METHOD

TASKS = {"ct": "CT slice triage", "radiographs": "radiograph findings"}


@dataclass(frozen=True)
class DemoSettings:
    """Data size, recipe and evaluation size; ``tiny`` is what CI runs."""

    ct_patients: int = 16
    slices: int = 24
    radiographs: int = 320
    eval_ct_patients: int = 6
    eval_radiographs: int = 120
    size: int = 32
    arch: str = "resnet10"
    width: float = 0.25
    batch_size: int = 64
    time_budget: float = 240.0
    method: str = DEFAULT_METHOD  # co-byol learnt the CT task only at this budget (docs/report.md)
    max_steps: int | None = None
    shots: tuple[int, ...] = (1, 5, 10)
    episodes: int = 300
    latency: bool = True

    @classmethod
    def tiny(cls) -> DemoSettings:
        return cls(ct_patients=2, slices=9, radiographs=24, eval_ct_patients=2,
                   eval_radiographs=24, size=24, batch_size=16, time_budget=60.0,
                   max_steps=4, shots=(1, 3), episodes=20, latency=False)


def phantoms():
    """``clinical_examples.phantoms``: the DICOM phantom writer."""
    return phantom_data


def make_data(out: Path, s: DemoSettings, seed: int, console: Console) -> tuple[Path, Path]:
    """Unlabelled ``train`` and labelled ``labelled`` (class subfolders) phantom sets;
    written once per settings (a marker records them), reused on the next run."""
    marker = out / "dataset.json"
    wanted = {"ct_patients": s.ct_patients, "slices": s.slices, "radiographs": s.radiographs,
              "eval_ct_patients": s.eval_ct_patients, "eval_radiographs": s.eval_radiographs,
              "seed": seed, "version": 1}
    train, labelled = out / "train", out / "labelled"
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        console.print(f"data: reusing {out}")
        return train, labelled
    ph = phantoms()
    with console.status("writing the DICOM phantom data set"):
        ph.write_dataset(train, s.ct_patients, s.slices, s.radiographs, seed, labels_csv=False)
        ph.write_dataset(labelled, s.eval_ct_patients, s.slices, s.eval_radiographs, seed + 1,
                         first_patient=1000, layout="folders")
    marker.write_text(json.dumps(wanted))
    console.print(f"data: {s.ct_patients * s.slices + s.radiographs} unlabelled and "
                  f"{s.eval_ct_patients * s.slices + s.eval_radiographs} labelled DICOM "
                  f"images of fake patients in {out}")
    return train, labelled


def pretrain_config(s: DemoSettings, seed: int, monitor: Path | None):
    from cossl_edge.contract import PreprocessContract
    from cossl_edge.training.config import PretrainConfig

    return PretrainConfig(method=s.method, arch=s.arch, width=s.width,
                          batch_size=s.batch_size, time_budget=s.time_budget, seed=seed,
                          contract=PreprocessContract(channels=1, size=s.size),
                          monitor=str(monitor) if monitor else None, checkpoint_every=1000)


def train_encoders(out: Path, train: Path, labelled: Path, s: DemoSettings, seed: int,
                   console: Console, progress: bool) -> tuple[Path, Path]:
    """The pretrained run, and a run directory holding the same network at initialisation
    (same seed, zero steps), so both go through export and evaluation alike."""
    import shutil

    from cossl_edge.training.loop import pretrain

    runs = (out / "run-pretrained", out / "run-random-init")
    for run in runs:
        shutil.rmtree(run, ignore_errors=True)  # a fresh demo, not a resumed one
    console.rule(f"pretraining {s.method}")
    summary = pretrain(pretrain_config(s, seed, labelled), train, runs[0], progress=progress,
                       max_steps=s.max_steps, console=console)
    console.print(f"{summary['steps']} steps, {summary['epochs']} epochs in "
                  f"{summary['elapsed_s']:.0f} s on {summary['images']} images")
    pretrain(pretrain_config(s, seed, None), train, runs[1], progress=False, max_steps=0,
             console=Console(quiet=True))
    return runs


def export_both(runs: tuple[Path, Path], train: Path, s: DemoSettings, console: Console,
                progress: bool) -> None:
    from cossl_edge.export import export_run

    for i, run in enumerate(runs):
        console.rule(f"int8 export · {run.name}")
        with ProgressBars(console, progress) as bars:
            report = export_run(run, calibration=train, target="auto",
                                measure_latency=s.latency and i == 0, progress=bars)
        agree = report.get("int8_agreement", {})
        console.print(f"encoder.int8.onnx {report['files']['int8']['bytes'] / 1e6:.2f} MB "
                      f"(fp32 {report['files']['fp32']['bytes'] / 1e6:.2f} MB), int8 cosine "
                      f"to fp32 {agree.get('cosine_mean', float('nan')):.4f}")


@dataclass
class Labelled:
    images: np.ndarray  # prepared N×S×S×C
    labels: np.ndarray
    tasks: np.ndarray  # "ct" | "radiographs", from the folder layout <finding>/<task>/...


def load_labelled(folder: Path, contract) -> Labelled:
    from cossl_edge.sources import labelled_samples, load_many

    samples, labels, _ = labelled_samples(folder)
    images, kept, _ = load_many(samples, contract)
    tasks = [samples[i].path.relative_to(folder).parts[1] for i in kept]
    return Labelled(images, np.asarray([labels[i] for i in kept]), np.asarray(tasks))


def evaluate(runs: tuple[Path, Path], labelled_dir: Path, s: DemoSettings, seed: int,
             console: Console) -> dict:
    """Few-shot episodes per task for both int8 encoders and raw pixels; a fitted
    classifier file per task. Returns {encoder: {task: evaluate_episodes result}}."""
    from cossl_edge.evaluation.episodes import evaluate_episodes
    from cossl_edge.runtime.encoder import Encoder

    name = f"{s.method} int8"
    encoders = {name: Encoder(runs[0] / "encoder.int8.onnx"),
                "random-init int8": Encoder(runs[1] / "encoder.int8.onnx")}
    data = load_labelled(labelled_dir, encoders[name].contract)
    vectors = {name: (enc.embed_prepared(data.images), enc.centering)
               for name, enc in encoders.items()}
    raw = data.images.reshape(len(data.images), -1)
    vectors["raw pixels"] = (raw, raw.mean(axis=0))
    results: dict = {}
    with console.status("few-shot episodes"):
        for encoder_name, (z, centre) in vectors.items():
            for task in TASKS:
                sel = data.tasks == task
                results.setdefault(encoder_name, {})[task] = evaluate_episodes(
                    z[sel], data.labels[sel], shots=s.shots, episodes=s.episodes,
                    kind="proto", seed=seed, centering=centre)
    results["_classifiers"] = fit_classifiers(encoders[name], vectors[name][0], data,
                                              runs[0].parent / "classifiers", seed)
    return results


def fit_classifiers(encoder, z: np.ndarray, data: Labelled, out: Path, seed: int,
                    shots: int = 5) -> dict[str, float]:
    """Per task: a 5-shot prototype classifier file, and its accuracy on the other images."""
    from cossl_edge.fewshot import FewShotClassifier

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scores = {}
    for task in TASKS:
        idx = np.flatnonzero(data.tasks == task)
        support = np.concatenate([rng.permutation(idx[data.labels[idx] == c])[:shots]
                                  for c in np.unique(data.labels[idx])])
        query = np.setdiff1d(idx, support)
        clf = FewShotClassifier.fit(z[support], list(data.labels[support]), kind="proto",
                                    centering=encoder.centering)
        clf.bind_model(encoder.sha256, encoder.path.name, encoder.contract.to_dict())
        clf.save(out / f"{task}.json")
        pred = np.asarray([p.label for p in clf.predict(z[query])])
        scores[task] = float((pred == data.labels[query]).mean())
    return scores
