import numpy as np

from cossl_edge.training.diagnostics import (
    collapse_warning,
    effective_rank,
    knn_accuracy,
    normalized_std,
    stratified_halves,
)


def test_effective_rank_bounds():
    rng = np.random.default_rng(0)
    iso = rng.standard_normal((2000, 16))
    assert 14.0 < effective_rank(iso) <= 16.0
    line = np.outer(rng.standard_normal(500), rng.standard_normal(16))
    assert effective_rank(line) < 1.01
    assert collapse_warning(effective_rank(line), 16) is not None
    assert collapse_warning(effective_rank(iso), 16) is None


def test_normalized_std_detects_collapse():
    rng = np.random.default_rng(0)
    healthy = normalized_std(rng.standard_normal((1000, 64)))
    assert abs(healthy - 1 / np.sqrt(64)) < 0.01
    assert normalized_std(np.ones((100, 64)) + 1e-6 * rng.standard_normal((100, 64))) < 1e-4


def test_knn_perfect_on_separated_clusters_and_chance_on_noise():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 32)) * 10
    labels = np.repeat(np.arange(3), 40)
    x = centres[labels] + rng.standard_normal((120, 32))
    a, b = stratified_halves(labels, 0)
    assert set(a).isdisjoint(b) and len(a) + len(b) == 120
    assert knn_accuracy(x[a], labels[a], x[b], labels[b]) == 1.0
    noise = rng.standard_normal((120, 32))
    acc = knn_accuracy(noise[a], labels[a], noise[b], labels[b])
    assert 0.1 < acc < 0.6
