"""N-way K-shot episodes on embeddings (or local maps, for the ``local`` classifier), and
their metrics (VISSL/SimpleShot low-shot protocol).

An episode draws ``ways`` classes (the ``local`` classifier's normal class in every one),
``shots`` support and ``queries`` query samples per class, support and query disjoint; a
classifier is fitted on the support and scored on the query.

>>> import numpy as np
>>> labels = np.repeat([0, 1, 2], 6)
>>> ep = sample_episodes(labels, ways=2, shots=2, queries=3, episodes=4, seed=0)
>>> all(not set(s) & set(q) for s, q in ep)
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cossl_edge.fewshot import FewShotClassifier
from cossl_edge.fewshot.maths import binary_auc  # noqa: F401  (re-exported)


class EpisodeError(ValueError):
    """A labelled set too small for the requested episodes."""


def sample_episodes(labels: np.ndarray, ways: int, shots: int, queries: int, episodes: int,
                    seed: int = 0, keep: str | None = None
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(support indices, query indices) per episode; deterministic for a seed.
    ``keep``: a class that every episode includes (the others are drawn)."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    eligible = classes[counts >= shots + 1]
    if len(eligible) < ways:
        raise EpisodeError(
            f"{ways}-way {shots}-shot needs {ways} classes with at least {shots + 1} images "
            f"each; only {len(eligible)} have that many: add images or lower --ways/--shots")
    if keep is not None and keep not in eligible:
        raise EpisodeError(f"{shots}-shot needs at least {shots + 1} images of class {keep!r}: "
                           "add images or lower --shots")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(episodes):
        support, query = [], []
        if keep is None:
            drawn = rng.choice(eligible, size=ways, replace=False)
        else:
            others = eligible[eligible != keep]
            drawn = [keep, *rng.choice(others, size=ways - 1, replace=False)]
        for c in drawn:
            idx = rng.permutation(np.flatnonzero(labels == c))
            support.append(idx[:shots])
            query.append(idx[shots : shots + queries])
        out.append((np.concatenate(support), np.concatenate(query)))
    return out


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation 95% confidence interval."""
    v = np.asarray(values, np.float64)
    if len(v) < 2:
        return float(v.mean()), 0.0
    return float(v.mean()), float(1.96 * v.std(ddof=1) / np.sqrt(len(v)))


def evaluate_episodes(embeddings: np.ndarray | dict, labels: Sequence[str],
                      shots: Sequence[int] = (1, 5),
                      episodes: int = 200, ways: int | None = None, kind: str = "proto",
                      queries: int = 15, seed: int = 0, centering: np.ndarray | None = None,
                      **fit_options) -> dict:
    """Mean accuracy ± 95% CI, balanced accuracy, per-class recall (and AUC when ways = 2)
    for each shot count. ``ways`` defaults to all classes. Kind ``local`` takes N×D×h×w
    local maps, and its normal class (``normal_class`` in ``fit_options``, else found by
    name) is in every episode. Kind ``auto`` takes the model's readings as a dict
    (``embedding``, and ``anomaly_map`` when the model has one) and chooses one per episode
    from its support (:func:`~cossl_edge.fewshot.anomaly.choose_reading`); the result
    counts the choices."""
    labels = np.asarray(labels)
    n_classes = len(np.unique(labels))
    ways = ways or n_classes
    if ways < 2:
        raise EpisodeError("episodes need at least two classes (--ways ≥ 2)")
    results = {"ways": ways, "episodes": episodes, "queries": queries, "classifier": kind,
               "seed": seed, "shots": {}}
    keep = None
    anomaly = kind == "anomaly" or (kind == "auto" and isinstance(embeddings, dict)
                                    and "anomaly_map" in embeddings and n_classes == 2)
    if kind == "local" or anomaly:
        from cossl_edge.fewshot.normal import normal_class_of

        keep = normal_class_of(sorted(set(labels.tolist())), fit_options.get("normal_class"))
        fit_options = {**fit_options, "normal_class": keep}
    if kind == "auto":
        x = {k: np.asarray(v, np.float32) for k, v in dict(embeddings).items()}
    else:
        x = np.asarray(embeddings, np.float32)
    for k in shots:
        plan = sample_episodes(labels, ways, k, queries, episodes, seed + k, keep)
        results["shots"][str(k)] = _score(x, labels, plan, kind, centering, fit_options)
    return results


def _score(x, labels: np.ndarray, plan, kind: str, centering, fit_options) -> dict:
    accs, baccs, aucs = [], [], []
    hits: dict[str, list[int]] = {}
    chosen: dict[str, int] = {}
    for support, query in plan:
        kind_e, xe = kind, x
        if kind == "auto":
            from cossl_edge.fewshot import READS
            from cossl_edge.fewshot.anomaly import choose_reading

            kind_e, _ = choose_reading({k: v[support] for k, v in x.items()},
                                       list(labels[support]), centering,
                                       fit_options.get("normal_class"))
            chosen[kind_e] = chosen.get(kind_e, 0) + 1
            xe = x[READS[kind_e]]
        clf = FewShotClassifier.fit(xe[support], list(labels[support]), kind=kind_e,
                                    centering=centering, **fit_options)
        proba = clf.predict_proba(xe[query])
        pred = np.asarray(clf.classes)[proba.argmax(1)]
        truth = labels[query]
        correct = pred == truth
        accs.append(correct.mean())
        recalls = [correct[truth == c].mean() for c in clf.classes]
        baccs.append(float(np.mean(recalls)))
        for c in clf.classes:
            hits.setdefault(str(c), []).extend(correct[truth == c].tolist())
        if len(clf.classes) == 2:
            aucs.append(binary_auc(proba[:, 1], truth == clf.classes[1]))
    acc, ci = mean_ci95(accs)
    out = {"accuracy": acc, "ci95": ci, "balanced_accuracy": float(np.mean(baccs)),
           "per_class_recall": {c: float(np.mean(h)) for c, h in sorted(hits.items())}}
    if aucs:
        out["auc"], out["auc_ci95"] = mean_ci95(aucs)
    if chosen:
        out["chosen"] = chosen
    return out
