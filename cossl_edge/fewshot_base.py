"""What every few-shot head shares: its error, CL2N, and which class is the normal one.

>>> normal_class_of(["crack", "Functional"])
'Functional'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Class names taken as the normal class when --normal-class is not given (after lower-casing
# and turning spaces and hyphens into underscores).
NORMAL_NAMES = ("normal", "no_finding", "negative", "functional", "good", "ok")


class ClassifierError(ValueError):
    """A classifier file that cannot be used (message names the file and the fix)."""


def cl2n(x: np.ndarray, centering: np.ndarray | None = None) -> np.ndarray:
    """Centre (subtract ``centering``) and L2-normalise each row."""
    x = np.asarray(x, np.float32)
    if centering is not None:
        x = x - np.asarray(centering, np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def normal_class_of(classes: Sequence[str], given: str | None = None) -> str:
    """The normal class: ``given``, else the one class named like ``NORMAL_NAMES``."""
    if given is not None:
        if given not in classes:
            raise ClassifierError(f"--normal-class {given!r} is not a support class "
                                  f"({', '.join(classes)}); pass one of them")
        return given
    matches = [c for c in classes if c.lower().replace(" ", "_").replace("-", "_")
               in NORMAL_NAMES]
    if len(matches) != 1:
        raise ClassifierError(f"cannot tell which class is normal among {', '.join(classes)} "
                              f"(expected exactly one named like {'/'.join(NORMAL_NAMES)}); "
                              "pass --normal-class NAME")
    return matches[0]


def binary_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U, ties count one half)."""
    scores, positive = np.asarray(scores), np.asarray(positive, bool)
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)
