"""One inference path: a model and a fitted classifier → class probabilities, and heatmaps
for the map heads. ``fewshot predict``, the node, and the benchmarks call it instead of
wrapping the encoder themselves (MONAI Deploy's inference operator: pre-process, predict,
post-process).

Pre-process: the model's own contract (``prepare`` then ``normalize``); predict: the one
model output the classifier reads; post-process: the classifier's probabilities and maps.
The classifier is anything with the small :class:`Classifier` protocol (the few-shot
envelope, :class:`cossl_edge.fewshot.FewShotClassifier`, sits above this layer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cossl_edge.runtime import metadata as mm
from cossl_edge.runtime.encoder import Encoder
from cossl_edge.sources import SampleRef, Skipped


class Classifier(Protocol):
    kind: str
    classes: list[str]

    @property
    def reads(self) -> str: ...  # the model output it takes

    @property
    def has_heatmaps(self) -> bool: ...

    def apply(self, readings: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]: ...


@dataclass
class Batch:
    """One batch of samples through the predictor: the samples read, their prepared images,
    N×K probabilities, N×h×w heatmaps (map heads) or None, and the samples skipped."""

    samples: list[SampleRef]
    prepared: np.ndarray
    proba: np.ndarray
    heatmaps: np.ndarray | None
    skipped: list[Skipped]


@dataclass
class Result:
    """A whole set: the samples read, N×K probabilities, heatmaps or None, samples skipped."""

    samples: list[SampleRef]
    proba: np.ndarray
    heatmaps: np.ndarray | None
    skipped: list[Skipped]


class Predictor:
    """``encoder`` (its contract and session) and ``classifier`` → probabilities."""

    def __init__(self, encoder: Encoder, classifier: Classifier) -> None:
        encoder.require(classifier.reads)
        self.encoder, self.classifier = encoder, classifier
        self._run = {mm.OUTPUT: encoder.run, mm.LOCAL_MAP: encoder.run_local,
                     mm.ANOMALY_MAP: encoder.run_anomaly}[classifier.reads]

    def read(self, prepared: np.ndarray) -> np.ndarray:
        """N×S×S×C prepared images → the model output the classifier reads (one call)."""
        return self._run(self.encoder.contract.normalize(prepared))

    def predict_prepared(self, prepared: np.ndarray) -> Result:
        """Prepared images (``contract.prepare``'s output), one session call."""
        proba, heat = self.classifier.apply(self.read(prepared))
        return Result([], proba, heat, [])

    def batches(self, samples: Sequence[SampleRef], batch_size: int = 64
                ) -> Iterator[Batch]:
        """Batch by batch (the next one decoded while this one runs), unreadable samples
        skipped and reported in each batch."""
        for refs, prepared, bad in self.encoder.iter_prepared(samples, batch_size):
            if refs:
                proba, heat = self.classifier.apply(self.read(prepared))
            else:
                proba, heat = np.zeros((0, len(self.classifier.classes))), None
            yield Batch(refs, prepared, proba, heat, bad)

    def predict_samples(self, samples: Sequence[SampleRef], batch_size: int = 64,
                        advance: Callable[[int], None] | None = None,
                        on_batch: Callable[[Batch], None] | None = None) -> Result:
        """A set of samples; ``advance`` counts the samples done. The map heads are applied
        batch by batch (``on_batch`` sees each, with its images and heatmaps); the embedding
        heads once on all the set's embeddings."""
        if not self.classifier.has_heatmaps:
            emb = self.encoder.embed_samples(samples, batch_size, on_batch=advance)
            proba, _ = self.classifier.apply(emb.vectors)
            return Result(emb.samples, proba, None, emb.skipped)
        kept, probas, heats, skipped = [], [], [], []
        for batch in self.batches(samples, batch_size):
            if batch.samples:
                probas.append(batch.proba)
                heats.append(batch.heatmaps)
                kept += batch.samples
                if on_batch is not None:
                    on_batch(batch)
            skipped += batch.skipped
            if advance is not None:
                advance(len(batch.samples) + len(batch.skipped))
        k = len(self.classifier.classes)
        return Result(kept, np.concatenate(probas) if probas else np.zeros((0, k)),
                      np.concatenate(heats) if heats else None, skipped)
