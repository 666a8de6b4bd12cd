"""Few-shot accuracy under a small L∞ PGD attack on the pooled embedding (Aubret et al.
2025 claim CO-SSL representations are more robust to it than their base method's).

The attacked classifier is the protocol's few-shot classifier: N-way K-shot episodes
(:func:`cossl_edge.evaluation.episodes.sample_episodes`, the same seed as the clean
few-shot score, so the first ``episodes`` episodes are the clean score's first episodes),
CL2N prototypes of the clean support embeddings, softmax of cosine similarity / temperature
(:class:`cossl_edge.fewshot.FewShotClassifier`, ``kind="proto"``). Each query image is
attacked against its own episode's prototypes:

    maximise  CE(softmax(cl2n(f(x')) · Pᵀ / T), true class)  over  ‖x' − x‖∞ ≤ ε, x' ∈ [0,1]

with x the prepared image in [0, 1] *before* the contract's normalisation, f the encoder up
to the pooled embedding, P the prototypes and T the classifier's temperature. PGD (Madry et
al. 2018): ``steps`` signed-gradient steps of α = 2.5·ε/steps, each followed by projection on
the ε-ball and clipping to [0, 1]; optional uniform random start in the ball. The support
stays clean (the classifier is fitted on clean labelled examples, then attacked at use).

A query counts as correct at ε only when it is classified correctly clean and under the
attacks at every evaluated ε' ≤ ε (each of those perturbations lies inside the ε-ball, so a
larger budget is at least as strong): accuracy never increases with ε, and ε = 0 is exactly
the clean accuracy of the same episodes. ``accuracy_single_attack`` is each ε's attack on its
own (a few PGD steps are not an exact maximisation, so it may rise with ε by chance).

It needs gradients, so only an extractor with an ``attack`` method (a run directory's torch
encoder, :class:`cossl_edge.training.run_features.RunFeatures`) can be attacked; others report
``{"available": false, "reason": ...}``. This module itself stays torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from cossl_edge.evaluation.episodes import EpisodeError, mean_ci95, sample_episodes
from cossl_edge.evaluation.features import Extractor
from cossl_edge.fewshot import FewShotClassifier

STEP_FACTOR = 2.5  # α = 2.5·ε / steps (Madry et al.): the last steps can still reach the edge
NO_GRADIENTS = ("PGD needs the encoder's gradients: evaluate the pretraining run directory "
                "(torch), not an exported .onnx model")


class Attackable(Protocol):
    def attack(self, prepared: np.ndarray, target: np.ndarray, prototypes: np.ndarray,
               centering: np.ndarray, temperature: float, eps: float, steps: int,
               step_size: float, random_start: bool = False, seed: int = 0) -> np.ndarray:
        """Adversarial prepared images (same shape, within the ε-ball and [0, 1])."""
        ...


def pgd_curve(extract: Extractor, images: np.ndarray, emb: np.ndarray, y: np.ndarray,
              center: np.ndarray, eps_levels: tuple[float, ...], shots: int, episodes: int,
              queries: int, steps: int, random_start: bool = False, seed: int = 0,
              advance: Callable[[int], None] | None = None) -> dict:
    """Few-shot accuracy (± 95% CI over episodes) at each ε of ``eps_levels`` (ascending,
    starting at 0), on ``images`` (prepared, N×S×S×C) whose clean embeddings are ``emb``;
    ``advance(1)`` after each episode's attack at one ε."""
    levels = [float(e) for e in eps_levels]
    head = {"levels": levels, "levels_255": [round(e * 255, 4) for e in levels],
            "shots": shots, "episodes": episodes, "queries": queries, "steps": steps,
            "step_size": f"{STEP_FACTOR}·ε/steps", "random_start": random_start,
            "norm": "Linf, image in [0, 1] before normalisation",
            "loss": "cross-entropy of the CL2N prototype softmax (the episode's clean support)"}
    if not hasattr(extract, "attack"):
        return {"available": False, "reason": NO_GRADIENTS, **head}
    try:
        plan = sample_episodes(y, len(np.unique(y)), shots, queries, episodes, seed + shots)
    except EpisodeError as e:
        return {"available": False, "reason": str(e), **head}
    accs: list[list[float]] = [[] for _ in levels]
    single: list[list[float]] = [[] for _ in levels]  # each ε's attack on its own
    for i, (support, query) in enumerate(plan):
        clf = FewShotClassifier.fit(emb[support], list(y[support]), kind="proto",
                                    centering=center)
        target = np.searchsorted(np.asarray(clf.classes), y[query])
        protos = np.asarray(clf.params["prototypes"], np.float32)
        temperature = float(clf.settings["temperature"])
        centering = np.asarray(clf.centering, np.float32)
        clean = correct = clf.predict_proba(emb[query]).argmax(1) == target
        for j, eps in enumerate(levels):
            hit = clean
            if eps > 0:
                adv = extract.attack(images[query], target, protos, centering, temperature, eps,
                                     steps, STEP_FACTOR * eps / steps, random_start,
                                     seed + 7919 * i + j)
                hit = clf.predict_proba(extract(adv).embeddings).argmax(1) == target
                if advance:
                    advance(1)
            correct = correct & hit
            accs[j].append(float(correct.mean()))
            single[j].append(float(hit.mean()))
    stats = [mean_ci95(a) for a in accs]
    return {"available": True, **head, "accuracy": [m for m, _ in stats],
            "ci95": [c for _, c in stats],
            "accuracy_single_attack": [float(np.mean(a)) for a in single]}
