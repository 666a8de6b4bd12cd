"""Which class is the normal one: the one rule ``fewshot fit``, ``fewshot eval``, the heads
and the node all follow.

The class given (``--normal-class``, or the one a classifier file recorded at fit), else the
one class whose name, lower-cased with spaces and hyphens as underscores, is in
``NORMAL_NAMES``.

>>> normal_class_of(["crack", "Functional"])
'Functional'
>>> normal_class_of(["healthy", "lesion"], "healthy")
'healthy'
>>> normal_class_of(["a", "b"], required=False) is None
True
"""

from __future__ import annotations

from collections.abc import Sequence

from cossl_edge.fewshot.errors import ClassifierError

# Class names taken as the normal class when --normal-class is not given (after lower-casing
# and turning spaces and hyphens into underscores).
NORMAL_NAMES = ("normal", "no_finding", "negative", "functional", "good", "ok")


def normal_class_of(classes: Sequence[str], given: str | None = None,
                    required: bool = True) -> str | None:
    """The normal class: ``given``, else the one class named like ``NORMAL_NAMES``.

    A ``given`` name that is not a class is an error. Without one, no class (or several)
    named like a normal class is an error when ``required``, else None (a classifier without
    a normal class, as the node may serve)."""
    if given is not None:
        if given not in classes:
            raise ClassifierError(f"--normal-class {given!r} is not a support class "
                                  f"({', '.join(classes)}); pass one of them")
        return given
    matches = [c for c in classes if c.lower().replace(" ", "_").replace("-", "_")
               in NORMAL_NAMES]
    if len(matches) != 1:
        if not required:
            return None
        raise ClassifierError(f"cannot tell which class is normal among {', '.join(classes)} "
                              f"(expected exactly one named like {'/'.join(NORMAL_NAMES)}); "
                              "pass --normal-class NAME")
    return matches[0]
