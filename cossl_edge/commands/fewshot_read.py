"""What ``fewshot fit`` and ``fewshot eval`` read of a labelled folder through the model:
the outputs a classifier kind takes, and the centring vector it is given."""

from __future__ import annotations

from pathlib import Path

from cossl_edge.commands import edge_options as opt
from cossl_edge.progress import progress_bar


def reads(encoder, classifier: str) -> list[str]:
    """The model outputs a classifier kind needs (auto: the embedding, and the anomaly map
    when the model has one); a model without them is refused with the fix."""
    from cossl_edge.fewshot import READS

    if classifier == "auto":
        return ["embedding"] + (["anomaly_map"] if encoder.has_anomaly_map else [])
    encoder.require(READS[classifier])
    return [READS[classifier]]


def features_labelled(encoder, folder: Path, labels_csv: Path | None, batch_size: int,
                      classifier: str, normal_class: str | None, sampling=None,
                      raw: bool = False):
    """(features, labels, raw pixels or None) of a labelled folder: the embeddings, the
    local or anomaly maps the classifier reads, or for auto a dict of the readings;
    unreadable files are skipped and reported."""
    import numpy as np

    from cossl_edge.evaluation.features import downsampled_pixels
    from cossl_edge.fewshot.normal import normal_class_of
    from cossl_edge.runtime.readings import read_samples
    from cossl_edge.sources import labelled_samples

    names = reads(encoder, classifier)
    samples, labels, _ = labelled_samples(folder, labels_csv, sampling)
    if classifier in ("local", "anomaly"):
        normal_class_of(sorted(set(labels)), normal_class)  # its error before the long part
    label_of = dict(zip(samples, labels, strict=True))
    pixels: list = []
    with progress_bar("embedding", len(samples)) as advance:
        readings, kept, skipped = read_samples(
            encoder, samples, names, batch_size, advance,
            (lambda p: pixels.append(downsampled_pixels(p))) if raw else None)
    opt.report_skipped(*opt.count_skipped(skipped))
    if not kept:
        raise ValueError(f"{folder}: no readable labelled images; check the folder")
    x = readings if classifier == "auto" else readings[names[0]]
    return x, [label_of[s] for s in kept], (np.concatenate(pixels) if raw else None)


def model_centering(encoder, classifier: str, scoring: str = "memory"):
    """The centring vector a head is fitted with (:func:`cossl_edge.fewshot.policy.
    fit_centering`)."""
    from cossl_edge.fewshot.policy import fit_centering

    return fit_centering(encoder.centering, encoder.pooling, classifier, scoring)
