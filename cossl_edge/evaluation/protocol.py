"""The evaluation protocol on one labelled set, as one JSON-ready dict.

One split (seeded, stratified) serves the linear probe, the kNN and the robustness curves:
the probe and the kNN bank see clean training-part embeddings only; the curves corrupt the
test part (input noise: re-embedded; internal masking: pooled from its local maps). Few-shot
episodes draw from the whole set, and so does the PGD curve (:mod:`.adversarial`: the first
``pgd_episodes`` of the ``pgd_shots``-shot episodes, their queries attacked). Every
classifier centres on the mean embedding of the evaluated images (labels unused), the same
rule for every encoder and for raw pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from cossl_edge.evaluation.adversarial import pgd_curve
from cossl_edge.evaluation.corruptions import gaussian_noise, masked_pooling
from cossl_edge.evaluation.episodes import EpisodeError, evaluate_episodes
from cossl_edge.evaluation.features import Extractor, Features
from cossl_edge.evaluation.knn import knn_accuracy
from cossl_edge.evaluation.probe import LinearProbe, fit_linear_probe
from cossl_edge.evaluation.redundancy import local_redundancy
from cossl_edge.evaluation.splits import stratified_split
from cossl_edge.progress import ProgressFactory  # the CLI gives a rich bar, the benchmark its own


@dataclass
class EvaluationSettings:
    seed: int = 0
    test_fraction: float = 0.5
    shots: tuple[int, ...] = (1, 5, 10)
    episodes: int = 200
    queries: int = 15
    knn_k: int = 20
    knn_temperature: float = 0.07
    noise_levels: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
    mask_levels: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.9)
    # L∞ PGD radii on the [0, 1] image (0 alone: no attack), its steps and episodes
    pgd_eps: tuple[float, ...] = (0.0, 1 / 255, 2 / 255, 4 / 255)
    pgd_steps: int = 5
    pgd_episodes: int = 10
    pgd_shots: int = 5
    pgd_random_start: bool = False

    def __post_init__(self) -> None:
        # Every curve starts at the clean point (level 0), which the drops are measured from.
        self.noise_levels = tuple(sorted({0.0, *map(float, self.noise_levels)}))
        self.mask_levels = tuple(sorted({0.0, *map(float, self.mask_levels)}))
        self.shots = tuple(sorted({int(k) for k in self.shots}))
        self.pgd_eps = tuple(sorted({0.0, *map(float, self.pgd_eps)}))
        if self.pgd_eps[0] < 0 or self.pgd_eps[-1] > 1 or self.pgd_steps < 1 \
                or self.pgd_episodes < 1 or self.pgd_shots < 1:
            raise ValueError("PGD needs ε within [0, 1] and steps, episodes and shots ≥ 1")
        if self.noise_levels[0] < 0 or self.mask_levels[0] < 0 or self.mask_levels[-1] > 1:
            raise ValueError("noise levels must be ≥ 0 and masking fractions within [0, 1]")
        if not 0 < self.test_fraction < 1 or min(self.shots, default=1) < 1:
            raise ValueError("test fraction must be within (0, 1) and shots ≥ 1")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class _Scorer:
    """Probe and kNN fitted on the clean training part, scored on any test-part features."""

    def __init__(self, emb: np.ndarray, labels: np.ndarray, train: np.ndarray,
                 s: EvaluationSettings, center: np.ndarray) -> None:
        self.bank, self.bank_labels = emb[train], labels[train]
        self.probe: LinearProbe = fit_linear_probe(self.bank, self.bank_labels, s.seed)
        self.s, self.center = s, center

    def __call__(self, test_emb: np.ndarray, test_labels: np.ndarray) -> tuple[float, float]:
        knn = knn_accuracy(self.bank, self.bank_labels, test_emb, test_labels, self.s.knn_k,
                           self.s.knn_temperature, self.center)
        return self.probe.accuracy(test_emb, test_labels), knn


def evaluate(extract: Extractor, images: np.ndarray, labels: Sequence[str],
             settings: EvaluationSettings | None = None,
             progress: ProgressFactory | None = None) -> dict:
    """Every metric of the protocol for prepared ``images`` (N×S×S×C in [0, 1])."""
    s = settings or EvaluationSettings()
    y = np.asarray(labels)
    if len(np.unique(y)) < 2:
        raise ValueError("evaluation needs at least two classes")
    feats = extract(images, _bar(progress, "embedding", len(images)))
    emb = feats.embeddings
    center = emb.mean(axis=0)
    train, test = stratified_split(y, s.test_fraction, s.seed)
    scorer = _Scorer(emb, y, train, s, center)
    probe_acc, knn_acc = scorer(emb[test], y[test])
    result = {
        "encoder": extract.description, "images": int(len(y)),
        "classes": sorted(map(str, np.unique(y))), "embedding_dim": int(emb.shape[1]),
        "feature_grid": list(feats.local_maps.shape[2:]) if feats.local_maps is not None
        else None,
        "split": {"train": int(len(train)), "test": int(len(test))},
        "linear_probe": {"accuracy": probe_acc, "C": scorer.probe.C},
        "knn": {"accuracy": knn_acc, "k": s.knn_k, "temperature": s.knn_temperature},
        "fewshot": _fewshot(emb, y, s, center),
        "robustness": {
            "noise": _noise_curve(extract, images[test], y[test], scorer, s, progress,
                                  (probe_acc, knn_acc)),
            "masking": _mask_curve(feats, test, y[test], scorer, s),
            "pgd": _pgd(extract, images, emb, y, center, s, progress),
        },
        "redundancy": _redundancy(feats),
        "settings": s.to_dict(),
    }
    return result


def _bar(progress: ProgressFactory | None, what: str, total: int):
    return progress(what, total) if progress else None


def _fewshot(emb: np.ndarray, y: np.ndarray, s: EvaluationSettings, center: np.ndarray) -> dict:
    out: dict = {"classifier": "proto (CL2N)", "shots": {}, "unavailable": {}}
    for k in s.shots:
        try:
            res = evaluate_episodes(emb, y, (k,), s.episodes, None, "proto", s.queries, s.seed,
                                    center)
        except EpisodeError as e:
            out["unavailable"][str(k)] = str(e)
            continue
        out["ways"] = res["ways"]
        out["shots"][str(k)] = res["shots"][str(k)]
    out["episodes"], out["queries"] = s.episodes, s.queries
    return out


def _noise_curve(extract: Extractor, images: np.ndarray, y: np.ndarray, scorer: _Scorer,
                 s: EvaluationSettings, progress: ProgressFactory | None,
                 clean: tuple[float, float]) -> dict:
    probe, knn = [], []
    noisy_levels = [v for v in s.noise_levels if v > 0]
    advance = _bar(progress, "noise curve", len(images) * len(noisy_levels))
    for sigma in s.noise_levels:
        if sigma == 0:  # σ = 0 is the clean input: reuse its scores
            p, k = clean
        else:
            p, k = scorer(extract(gaussian_noise(images, sigma, s.seed), advance).embeddings, y)
        probe.append(p)
        knn.append(k)
    return {"available": True, "levels": list(s.noise_levels), "probe": probe, "knn": knn}


def _pgd(extract: Extractor, images: np.ndarray, emb: np.ndarray, y: np.ndarray,
         center: np.ndarray, s: EvaluationSettings, progress: ProgressFactory | None) -> dict:
    attacked = [e for e in s.pgd_eps if e > 0]
    n = len(attacked) * s.pgd_episodes  # one step of the bar per episode and ε
    advance = _bar(progress, "PGD attack", n) if hasattr(extract, "attack") and n else None
    return pgd_curve(extract, images, emb, y, center, s.pgd_eps, s.pgd_shots, s.pgd_episodes,
                     s.queries, s.pgd_steps, s.pgd_random_start, s.seed, advance)


def _mask_curve(feats: Features, test: np.ndarray, y: np.ndarray, scorer: _Scorer,
                s: EvaluationSettings) -> dict:
    if feats.local_maps is None:
        return {"available": False, "reason": feats.no_local_map}
    maps = feats.local_maps[test]
    probe, knn = [], []
    for fraction in s.mask_levels:
        p, k = scorer(masked_pooling(maps, fraction, s.seed), y)
        probe.append(p)
        knn.append(k)
    return {"available": True, "levels": list(s.mask_levels), "probe": probe, "knn": knn,
            "positions": int(maps.shape[2] * maps.shape[3])}


def _redundancy(feats: Features) -> dict:
    if feats.local_maps is None:
        return {"available": False, "reason": feats.no_local_map}
    try:
        r = local_redundancy(feats.local_maps)
    except ValueError as e:
        return {"available": False, "reason": str(e)}
    return {"available": True, "mean": float(r.mean()), "std": float(r.std())}


def drop_at(curve: dict, level: float, key: str = "probe") -> float | None:
    """Accuracy points lost at ``level`` relative to the clean point (level 0); None when
    the curve is unavailable or lacks either level."""
    levels = curve.get("levels", [])
    if not curve.get("available") or level not in levels or 0.0 not in levels:
        return None
    values = curve[key]
    return float(values[levels.index(0.0)] - values[levels.index(level)])
