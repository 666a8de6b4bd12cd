"""The protocol every few-shot head follows, and the table of heads.

A head is one way of turning a few labelled readings of the model into class probabilities:
its settings in the constructor, the data in the calls (as LightlySSL's heads), no file, JSON
or CLI knowledge. The classifier file (:class:`~cossl_edge.fewshot.classifier.
FewShotClassifier`) is the envelope around a head's ``params``; ``HEADS`` in
:mod:`cossl_edge.fewshot.heads` names every head by its ``kind``: a new head is one class
there plus one line in that table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol

import numpy as np


class Head(Protocol):
    kind: ClassVar[str]  # its name in the table and in the classifier file
    reads: ClassVar[str]  # the model output it takes: embedding, local_map or anomaly_map
    maps: ClassVar[bool]  # whether it gives a heatmap per image

    @classmethod
    def from_settings(cls, settings: dict) -> Head:
        """The head that a classifier file's ``settings`` describe (defaults for a missing
        key, as files written before it knew that key)."""

    def settings(self) -> dict:
        """What the classifier file records of this head's settings (JSON-ready)."""

    def fit(self, x: np.ndarray, labels: Sequence[str], classes: list[str],
            centering: np.ndarray | None, normal_class: str | None
            ) -> tuple[dict, np.ndarray | None]:
        """(JSON-ready ``params``, the centring vector it applies or None) from N readings
        and their labels; ``classes`` sorted, at least two."""

    def proba(self, params: dict, classes: list[str], centering: np.ndarray | None,
              x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N×K probabilities in the order of ``classes``, N×h×w heatmaps or None)."""

    @staticmethod
    def check(params: dict, classes: list[str]) -> str | None:
        """The first way ``params`` (as read from a file) is unusable, or None."""


def lists_problem(params, keys: tuple[str, ...]) -> str | None:
    """A classifier file's ``params`` must be an object holding these keys as lists."""
    if not isinstance(params, dict) or any(not isinstance(params.get(k), list) for k in keys):
        return f"params must hold the lists {keys}"
    return None


def calibration_problem(params: dict, classes: list[str]) -> str | None:
    """The map heads' ``params`` hold a calibration and their normal class."""
    if not (isinstance(params.get("calibration"), dict) and
            params.get("normal_class") in classes):
        return "params must hold the calibration and a normal_class among the classes"
    return None
