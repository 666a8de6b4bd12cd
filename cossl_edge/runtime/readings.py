"""Samples through a model to the outputs a caller asks for (the embedding, the local map,
the anomaly map): what ``fewshot fit`` and ``fewshot eval`` read of a labelled folder."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from cossl_edge.runtime.encoder import Encoder
from cossl_edge.sources import SampleRef, Skipped


def read_samples(encoder: Encoder, samples: Sequence[SampleRef], names: Sequence[str],
                 batch_size: int = 64, advance: Callable[[int], None] | None = None,
                 each_prepared: Callable[[np.ndarray], None] | None = None
                 ) -> tuple[dict[str, np.ndarray], list[SampleRef], list[Skipped]]:
    """({output name: N×…}, the samples read, the samples skipped), batch by batch with one
    session call each; ``each_prepared`` sees every batch's prepared images."""
    parts: dict[str, list] = {n: [] for n in names}
    kept: list[SampleRef] = []
    skipped: list[Skipped] = []
    for refs, prepared, bad in encoder.iter_prepared(samples, batch_size):
        if refs:
            out = encoder.run_readings(encoder.contract.normalize(prepared), names)
            for n in names:
                parts[n].append(out[n])
            if each_prepared is not None:
                each_prepared(prepared)
        kept += refs
        skipped += bad
        if advance is not None:
            advance(len(refs) + len(bad))
    return {n: np.concatenate(v) for n, v in parts.items() if v}, kept, skipped
