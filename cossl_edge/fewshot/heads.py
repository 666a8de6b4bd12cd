"""The table of few-shot heads, by the ``kind`` a classifier file records. A new head is one
class (the protocol of :class:`~cossl_edge.fewshot.head.Head`) and one line here."""

from __future__ import annotations

from dataclasses import fields

from cossl_edge.fewshot.anomaly import AnomalyHead
from cossl_edge.fewshot.embedding_heads import KnnHead, LogregHead, ProtoHead
from cossl_edge.fewshot.errors import ClassifierError
from cossl_edge.fewshot.head import Head
from cossl_edge.fewshot.local import LocalHead

HEADS: dict[str, type[Head]] = {
    "proto": ProtoHead,
    "logreg": LogregHead,
    "knn": KnnHead,
    "local": LocalHead,
    "anomaly": AnomalyHead,
}


def kinds() -> tuple[str, ...]:
    return tuple(HEADS)


def head_class(kind: str) -> type[Head]:
    if kind not in HEADS:
        raise ClassifierError(f"classifier must be one of {kinds()}, got {kind!r}")
    return HEADS[kind]


def make_head(kind: str, **options) -> Head:
    """The head of ``kind`` with those of ``options`` it takes (C, k, temperature,
    top_positions, scoring, pool, …); the others are left out."""
    cls = head_class(kind)
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in options.items() if k in names})


def reads(kind: str) -> str:
    """The model output a kind is fitted and applied on."""
    return head_class(kind).reads
