"""The one stratified split: the linear probe's train/test, the training monitor's halves, the
examples' support/query pick.

>>> import numpy as np
>>> train, test = stratified_split(np.array([0, 0, 0, 0, 1, 1]), 0.5, seed=0)
>>> len(test), sorted(set(train) | set(test)) == list(range(6))
(3, True)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def stratified_split(labels: np.ndarray, test_fraction: float = 0.5, seed: int = 0,
                     test_count: Callable[[int], int] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices. Each class is shuffled (one seeded generator, classes in
    sorted order) and its first ``test_count(n)`` members go to test; by default
    ``round(test_fraction · n)``, kept between 1 and n − 1 when the class has two or more
    members, so that each side sees it."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if test_count is not None:
            n_test = test_count(len(idx))
        else:
            n_test = int(round(test_fraction * len(idx)))
            if len(idx) >= 2:
                n_test = min(max(n_test, 1), len(idx) - 1)
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return np.sort(np.asarray(train, int)), np.sort(np.asarray(test, int))
