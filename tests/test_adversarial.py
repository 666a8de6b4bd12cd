"""The PGD robustness curve on known cases: the attack stays in the ε-ball and in [0, 1],
ε = 0 is exactly the clean few-shot accuracy, accuracy never rises with ε, and an
encoder without gradients reports the curve unavailable."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cossl_edge.contract import PreprocessContract
from cossl_edge.evaluation.adversarial import NO_GRADIENTS, pgd_curve
from cossl_edge.evaluation.features import PixelFeatures
from cossl_edge.evaluation.protocol import EvaluationSettings, evaluate
from cossl_edge.training.backbones import ResNetEncoder
from cossl_edge.training.run_features import RunFeatures, pgd_linf, prototype_loss

CONTRACT = PreprocessContract(channels=1, size=16, mean=(0.5,), std=(0.25,))


def _images(n_per_class: int = 12, seed: int = 0):
    """4 classes; each lights a 4×4 block of a 16-px image at a class-specific place."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c in range(4):
        img = rng.random((n_per_class, 16, 16, 1)).astype(np.float32) * 0.3
        r, q = divmod(c, 2)
        img[:, 8 * r + 2 : 8 * r + 6, 8 * q + 2 : 8 * q + 6, 0] += 0.6
        images.append(img)
        labels += [f"c{c}"] * n_per_class
    return np.concatenate(images), labels


@pytest.fixture(scope="module")
def features():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny net on 16 px: one thread is faster, and spares the CPU
    torch.manual_seed(0)
    enc = ResNetEncoder("resnet10", width=0.125, in_channels=1, stem="small")
    yield RunFeatures(enc, CONTRACT, batch_size=32)
    torch.set_num_threads(threads)


def _problem(features, n=8):
    """Images, their targets, and prototypes of the clean class means (CL2N, like proto)."""
    images, labels = _images()
    emb = features(images).embeddings
    y = np.searchsorted(sorted(set(labels)), labels)
    center = emb.mean(0)
    z = emb - center
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    protos = np.stack([z[y == c].mean(0) for c in range(4)])
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    pick = np.arange(0, len(y), len(y) // n)
    return images[pick], y[pick], protos.astype(np.float32), center


def _loss(features, x, y, protos, center):
    with torch.no_grad():
        e = features.embed_torch(torch.from_numpy(x))
        return float(prototype_loss(e, torch.from_numpy(y), torch.from_numpy(protos),
                                    torch.from_numpy(center), 0.1))


def test_attack_stays_in_the_ball_and_the_unit_box_and_raises_the_loss(features):
    x, y, protos, center = _problem(features)
    x[0, :3] = 0.0  # pixels at the box's edges: clipping must keep them there or inside
    x[1, :3] = 1.0
    for eps, random_start in ((1 / 255, False), (4 / 255, True), (0.1, False)):
        adv = features.attack(x, y, protos, center, 0.1, eps, 3, 2.5 * eps / 3, random_start,
                              seed=1)
        assert adv.shape == x.shape and adv.dtype == np.float32
        assert np.abs(adv - x).max() <= eps + 1e-6
        assert adv.min() >= 0.0 and adv.max() <= 1.0
        assert np.abs(adv - x).max() > 0.5 * eps  # it moved
        assert _loss(features, adv, y, protos, center) > _loss(features, x, y, protos, center)
    np.testing.assert_array_equal(features.attack(x, y, protos, center, 0.1, 0.0, 5, 0.0), x)


def test_attack_is_deterministic_and_per_image(features):
    x, y, protos, center = _problem(features)
    a = features.attack(x, y, protos, center, 0.1, 2 / 255, 3, 2.5 * 2 / 255 / 3)
    b = pgd_linf(features.embed_torch, x, y, protos, center, 0.1, 2 / 255, 3,
                 2.5 * 2 / 255 / 3, batch_size=3)  # other batches: same images
    np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="ε ≥ 0"):
        pgd_linf(features.embed_torch, x, y, protos, center, 0.1, -0.1, 3, 0.1)


def test_embed_torch_is_the_evaluated_embedding(features):
    x, *_ = _problem(features)
    with torch.no_grad():
        e = features.embed_torch(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(e, features(x).embeddings, rtol=1e-5, atol=1e-6)


def test_pgd_curve_starts_at_clean_accuracy_and_never_rises(features):
    images, labels = _images()
    s = EvaluationSettings(shots=(5,), episodes=4, queries=4, noise_levels=(), mask_levels=(),
                           pgd_eps=(1 / 255, 4 / 255, 64 / 255), pgd_steps=3, pgd_episodes=4,
                           pgd_shots=5)
    res = evaluate(features, images, labels, s)
    pgd = res["robustness"]["pgd"]
    assert pgd["available"] and pgd["levels_255"] == [0, 1, 4, 64]
    clean = res["fewshot"]["shots"]["5"]["accuracy"]
    assert pgd["accuracy"][0] == clean  # exactly: same episodes, same classifier
    assert pgd["accuracy_single_attack"][0] == clean
    assert clean > 0.5
    assert all(a >= b for a, b in zip(pgd["accuracy"], pgd["accuracy"][1:], strict=False))
    assert pgd["accuracy"][-1] < clean  # a large ε does break it
    emb = features(images).embeddings
    again = pgd_curve(features, images, emb, np.asarray(labels), emb.mean(0), (0.0, 1 / 255),
                      5, 4, 4, 3)
    assert again["accuracy"] == pgd["accuracy"][:2]  # deterministic, the same first episodes
    json.dumps(pgd)


def test_no_gradients_no_pgd():
    images, labels = _images()
    s = EvaluationSettings(shots=(5,), episodes=3, queries=3, noise_levels=(), mask_levels=())
    pgd = evaluate(PixelFeatures(CONTRACT), images, labels, s)["robustness"]["pgd"]
    assert pgd["available"] is False and pgd["reason"] == NO_GRADIENTS
    with pytest.raises(ValueError, match="PGD"):
        EvaluationSettings(pgd_eps=(2.0,))


def test_compare_benchmark_passes_the_attack_through_its_wrapper(features):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import compare_methods

    wrapped = compare_methods._Capture(features)
    assert hasattr(wrapped, "attack") and not hasattr(compare_methods._Capture(
        PixelFeatures(CONTRACT)), "attack")
    images, labels = _images()
    s = EvaluationSettings(shots=(5,), episodes=2, queries=2, noise_levels=(), mask_levels=(),
                           pgd_eps=compare_methods.PGD_EPS, pgd_steps=1, pgd_episodes=2)
    m = compare_methods.flat(evaluate(wrapped, images, labels, s))
    assert m["pgd_clean"] >= m["pgd1"] >= m["pgd2"] >= m["pgd4"]
