"""Evaluation metrics on cases with known answers, the protocol, and `cossl-edge evaluate`
on a run directory and on ONNX models with and without the local map."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cossl_edge.cli import app
from cossl_edge.contract import PreprocessContract
from cossl_edge.evaluation.corruptions import gaussian_noise, masked_pooling
from cossl_edge.evaluation.features import Features, PixelFeatures
from cossl_edge.evaluation.knn import knn_accuracy, knn_predict
from cossl_edge.evaluation.probe import fit_linear_probe, stratified_split
from cossl_edge.evaluation.protocol import EvaluationSettings, drop_at, evaluate
from cossl_edge.evaluation.redundancy import local_redundancy
from cossl_edge.runtime.pooling import pooled

CONTRACT = PreprocessContract(channels=1, size=16)
FAST = EvaluationSettings(shots=(1, 5), episodes=10, queries=5, noise_levels=(0.2,),
                          mask_levels=(0.5, 1.0))


# -- metrics with known answers ------------------------------------------------------------
def test_identical_local_vectors_give_redundancy_one():
    rng = np.random.default_rng(0)
    v = rng.random((3, 5, 1, 1)).astype(np.float32)
    maps = np.broadcast_to(v, (3, 5, 4, 4))
    np.testing.assert_allclose(local_redundancy(maps), 1.0, atol=1e-6)


def test_orthogonal_local_vectors_give_redundancy_zero():
    maps = np.eye(4, dtype=np.float32).reshape(1, 4, 2, 2)  # position i holds basis vector i
    np.testing.assert_allclose(local_redundancy(maps), 0.0, atol=1e-7)
    with pytest.raises(ValueError, match="1×1"):
        local_redundancy(np.ones((2, 3, 1, 1)))


def test_masking_identical_positions_changes_nothing():
    maps = np.broadcast_to(np.arange(5.0).reshape(1, 5, 1, 1), (3, 5, 4, 4))
    for fraction in (0.25, 0.5, 0.9):
        np.testing.assert_allclose(masked_pooling(maps, fraction), pooled(maps), rtol=1e-6)


def test_masking_zero_changes_nothing_and_everything_gives_zero():
    maps = np.random.default_rng(1).random((6, 8, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(masked_pooling(maps, 0.0), pooled(maps))
    np.testing.assert_array_equal(masked_pooling(maps, 1.0), np.zeros((6, 8), np.float32))


def test_masking_zeroes_the_asked_number_of_positions():
    # Position p carries the value 2^p in every channel, so the pooled sum says which survived.
    maps = np.broadcast_to((2.0 ** np.arange(16)).reshape(1, 1, 4, 4), (5, 3, 4, 4))
    out = masked_pooling(maps, 0.5, seed=3) * 8  # the mean over the 8 positions left
    for row in out:
        kept = int(row[0])
        assert bin(kept).count("1") == 8 and np.all(row == row[0])
    assert len({int(r[0]) for r in out}) > 1  # positions differ between images


def test_noise_sigma_zero_changes_nothing():
    img = np.random.default_rng(2).random((4, 16, 16, 1)).astype(np.float32)
    np.testing.assert_array_equal(gaussian_noise(img, 0.0), img)
    noisy = gaussian_noise(np.full((64, 16, 16, 1), 0.5, np.float32), 0.1, seed=1)
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert abs(float(noisy.std()) - 0.1) < 0.01


def test_linearly_separable_toy_set_gets_a_perfect_probe():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = np.where(x @ np.array([1.0, -2.0, 0.5, 0.0, 1.0]) > 0, "pos", "neg")
    train, test = stratified_split(y, 0.5, seed=0)
    # keep a margin so that the test half is separable by what the train half shows
    margin = np.abs(x @ np.array([1.0, -2.0, 0.5, 0.0, 1.0])) > 0.3
    train, test = train[margin[train]], test[margin[test]]
    probe = fit_linear_probe(x[train], y[train], seed=0)
    assert probe.accuracy(x[test], y[test]) == 1.0
    shuffled = rng.permutation(y[train])  # labels without structure: no perfect probe
    assert fit_linear_probe(x[train], shuffled).accuracy(x[test], y[test]) < 0.8


def test_stratified_split_is_disjoint_seeded_and_balanced():
    y = np.repeat(["a", "b", "c"], [10, 20, 3])
    train, test = stratified_split(y, 0.5, seed=4)
    assert not set(train) & set(test) and len(train) + len(test) == len(y)
    assert [int((y[test] == c).sum()) for c in "abc"] == [5, 10, 2]
    assert np.array_equal(test, stratified_split(y, 0.5, seed=4)[1])
    assert not np.array_equal(test, stratified_split(y, 0.5, seed=5)[1])


def test_knn_on_well_separated_clusters_is_perfect():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 10
    x = np.concatenate([c + rng.normal(size=(30, 16)) for c in centres])
    y = np.repeat(np.arange(4), 30)
    train, test = stratified_split(y, 0.5, seed=0)
    assert knn_accuracy(x[train], y[train], x[test], y[test]) == 1.0
    # k = 1 returns the nearest neighbour's label, whatever the others say
    bank = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.9], [0.1, 1.0]])
    assert knn_predict(bank, np.array([0, 1, 1, 1]), np.array([[1.0, 0.05]]), k=1,
                       centering=np.zeros(2)).tolist() == [0]


# -- the protocol --------------------------------------------------------------------------
class ToyMaps:
    """Local maps whose every position repeats a class direction plus noise."""

    contract = CONTRACT
    description = {"kind": "toy"}

    def __call__(self, prepared, advance=None) -> Features:
        x = np.asarray(prepared, np.float32).reshape(len(prepared), -1)[:, :8]
        maps = np.repeat(np.repeat(x[:, :, None, None], 3, 2), 3, 3)
        return Features(pooled(maps), maps)


def _toy_images(n_per_class: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c in range(4):
        img = rng.random((n_per_class, 16, 16, 1)).astype(np.float32) * 0.2
        img[:, 0, 2 * c : 2 * c + 2, 0] = 0.9  # the class lights two of the first 8 pixels
        images.append(img)
        labels += [f"class{c}"] * n_per_class
    return np.concatenate(images), labels


def test_protocol_clean_points_equal_the_clean_scores():
    images, labels = _toy_images()
    res = evaluate(ToyMaps(), images, labels, FAST)
    assert res["linear_probe"]["accuracy"] == 1.0 and res["knn"]["accuracy"] == 1.0
    for kind in ("noise", "masking"):
        curve = res["robustness"][kind]
        assert curve["levels"][0] == 0.0
        assert curve["probe"][0] == res["linear_probe"]["accuracy"]
        assert curve["knn"][0] == res["knn"]["accuracy"]
    assert res["redundancy"]["available"] and res["redundancy"]["mean"] == pytest.approx(1.0)
    assert drop_at(res["robustness"]["masking"], 0.5) == pytest.approx(0.0)  # redundant map
    assert set(res["fewshot"]["shots"]) == {"1", "5"} and res["fewshot"]["ways"] == 4
    json.dumps(res)  # JSON-ready


def test_raw_pixels_report_masking_and_redundancy_unavailable():
    images, labels = _toy_images()
    res = evaluate(PixelFeatures(CONTRACT), images, labels, FAST)
    assert res["embedding_dim"] == 256 and res["feature_grid"] is None
    for part in (res["robustness"]["masking"], res["redundancy"]):
        assert part == {"available": False, "reason": "raw pixels have no feature map"}
    assert res["robustness"]["noise"]["available"]
    assert drop_at(res["robustness"]["masking"], 0.5) is None


def test_fewshot_too_few_images_is_reported_not_raised():
    images, labels = _toy_images(n_per_class=8)
    res = evaluate(PixelFeatures(CONTRACT), images, labels,
                   EvaluationSettings(shots=(1, 10), episodes=5, queries=3))
    assert "1" in res["fewshot"]["shots"] and "10" in res["fewshot"]["unavailable"]


# -- torch encoder, ONNX, CLI --------------------------------------------------------------
@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """A run directory (config.json + encoder.pt) and its ONNX exports with/without map."""
    from support.runs import write_tiny_run

    from cossl_edge.export.onnx_export import build_metadata, export_onnx, write_metadata
    from cossl_edge.training.config import PretrainConfig

    root = tmp_path_factory.mktemp("evaluate")
    run = root / "Doe^John run"  # a folder named after a patient must not leak
    config = PretrainConfig(arch="resnet10", width=0.125, contract=CONTRACT)
    encoder = write_tiny_run(run, config)
    models = {}
    for name, local in (("map", True), ("plain", False)):
        path = root / f"{name}.onnx"
        export_onnx(encoder, 1, 16, path, local_map=local)
        write_metadata(path, build_metadata(config, np.zeros(64, np.float32), "fp32", "x"))
        models[name] = path
    return {"run": run, **models}


def test_run_features_pool_like_the_encoder(encoders):
    from cossl_edge.training.run_features import RunFeatures

    feats = RunFeatures.from_run_dir(encoders["run"], batch_size=3)
    x = np.random.default_rng(0).random((5, 16, 16, 1)).astype(np.float32)
    out = feats(x)
    assert out.local_maps.shape == (5, 64, 2, 2)
    with torch.no_grad():
        ref = feats.encoder(torch.from_numpy(CONTRACT.normalize(x))).numpy()
    np.testing.assert_allclose(out.embeddings, ref, rtol=1e-5, atol=1e-6)


def _cli(*args):
    return CliRunner().invoke(app, ["evaluate", *map(str, args), "--episodes", "5",
                                    "--shots", "1,5", "--queries", "5", "--noise", "0,0.2",
                                    "--masking", "0,0.5", "--pgd-eps", "0,2",
                                    "--pgd-episodes", "2", "--pgd-steps", "2"])


def test_cli_run_dir_and_onnx_agree_and_write_json_and_plots(encoders, shapes_dir, tmp_path):
    out = {}
    for name in ("run", "map", "plain"):
        plots = tmp_path / f"plots-{name}"
        res = _cli(encoders[name], shapes_dir, "--json", tmp_path / f"{name}.json",
                   "--plots", plots)
        assert res.exit_code == 0, res.output
        text = (tmp_path / f"{name}.json").read_text()
        assert "Doe" not in text and str(shapes_dir) not in text
        out[name] = json.loads(text)
        assert (plots / "robustness-noise.png").stat().st_size > 1000
        assert (plots / "fewshot.png").exists()
        assert (plots / "robustness-masking.png").exists() == (name != "plain")
        assert (plots / "robustness-pgd.png").exists() == (name == "run")
    run, onnx_map, plain = out["run"], out["map"], out["plain"]
    assert run["images"] == 160 and run["feature_grid"] == [2, 2]
    assert onnx_map["redundancy"]["mean"] == pytest.approx(run["redundancy"]["mean"], abs=1e-4)
    assert abs(onnx_map["linear_probe"]["accuracy"] - run["linear_probe"]["accuracy"]) <= 0.02
    assert "--local-map" in plain["robustness"]["masking"]["reason"]
    assert not plain["redundancy"]["available"]
    assert plain["knn"]["accuracy"] == pytest.approx(onnx_map["knn"]["accuracy"], abs=0.02)
    pgd = run["robustness"]["pgd"]  # gradients: the run directory only
    assert pgd["available"] and pgd["levels_255"] == [0, 2] and len(pgd["accuracy"]) == 2
    assert pgd["accuracy"][1] <= pgd["accuracy"][0]
    assert "run directory" in onnx_map["robustness"]["pgd"]["reason"]


def test_cli_errors_are_one_line(tmp_path, shapes_dir, encoders):
    res = _cli(tmp_path / "missing.onnx", shapes_dir)
    assert res.exit_code == 2 and "not found" in res.output
    res = _cli(tmp_path, shapes_dir)  # a folder that is no run directory
    assert res.exit_code == 2 and "config.json" in res.output
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "x.png").write_bytes((shapes_dir / "disk" / "000.png").read_bytes())
    res = _cli(encoders["map"], flat)  # images but no class subfolders
    assert res.exit_code == 2 and "subfolder" in res.output
    assert "Traceback" not in res.output


# -- the comparison benchmark's data and report ----------------------------------------------
def _bench():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import compare_report
    import datasets

    return compare_report, datasets


def test_digits_upsampled_and_split_stratified():
    _, datasets = _bench()
    images, labels = datasets.load_digits32()
    assert images.shape == (1797, 32, 32) and 0 <= images.min() and images.max() <= 1
    picked = datasets.eval_indices(labels, 0.3, seed=0)
    counts = np.bincount(labels[picked], minlength=10)
    assert np.all(np.abs(counts - 0.3 * np.bincount(labels)) <= 0.5)


def _record(encoder, seed, fewshot5, dataset="toy"):
    metrics = {"fewshot5": fewshot5, "fewshot5_ci": 0.01, "probe": 0.9, "knn": 0.8,
               "redundancy": 0.5, "drop_mask50": 0.1, "drop_noise02": 0.2}
    curve = {"available": True, "levels": [0.0, 0.5], "probe": [0.9, 0.8], "knn": [0.8, 0.7]}
    return {"dataset": dataset, "encoder": encoder, "seed": seed, "cost": {},
            "effective_rank": 10.0, "metrics": metrics, "n_labeled": 40, "n_pretrain": 100,
            "result": {"robustness": {"noise": curve, "masking": curve}}}


def test_compare_report_replaces_only_its_section(tmp_path):
    from types import SimpleNamespace

    report, _ = _bench()
    m, ci = report.mean_ci([0.5, 0.6, 0.7])
    assert m == pytest.approx(0.6) and ci == pytest.approx(4.303 * 0.1 / np.sqrt(3), rel=1e-3)
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nother section\n")
    records = [_record("co-byol", s, 0.62 + 0.01 * s) for s in range(2)]
    records += [_record("byol", s, 0.60 + 0.01 * s) for s in range(2)]
    records += [_record("co-simclr", s, 0.60) for s in range(2)]
    records += [_record("simclr", s, 0.60) for s in range(2)]
    args = SimpleNamespace(docs=docs, smoke=True, budget_s=20.0, seeds=2, size=32, episodes=5,
                           overrides={"w_s": 0.5})
    machine = {"date": "2026-01-01", "cores": 2}
    for _ in range(2):  # written twice: replaced, not appended
        report.write_report(records, args, "python benchmarks/compare_methods.py", machine)
    text = docs.read_text()
    assert text.count(report.START) == 1 and "other section" in text
    assert "SMOKE RUN" in text and "`w_s=0.5`" in text
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if " − " in line}
    assert rows["| co-byol − byol"].endswith("| met |")  # +2 points
    assert rows["| co-simclr − simclr"].endswith("| **not met** |")  # +0 points
    assert (tmp_path / "img" / "compare-toy-masking.png").exists()
