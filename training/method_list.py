"""The list of pretraining methods: the one place that says which methods exist, what each
one is, its default local weight ``w_s`` and the settings that belong to it.

Torch-free, so that the CLI (``pretrain --help``), the demo, the clinical examples and the
benchmarks read it without loading a model. The implementation of a method is a class in
:mod:`cossl_edge.training.methods` registered under the same name; a new method is a loss
in ``losses.py``, a class in ``methods.py`` and one :func:`add_method` entry here (or from a
plug-in module), and appears in every command, option list and benchmark.

A method's own settings (:class:`MethodOption`) become ``pretrain`` options (``--<name>``).
Where :class:`~cossl_edge.training.config.PretrainConfig` has a field of that name, the
field holds the value and its default; a setting new to the configuration lives in
``PretrainConfig.method_options`` with the default declared here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MethodOption:
    """A setting of one or more methods. ``default`` only for a setting that is not a
    field of ``PretrainConfig`` (a field's default stays the field's)."""

    name: str  # the configuration field, and the option --name (underscores → dashes)
    help: str
    default: Any = None


@dataclass(frozen=True)
class MethodInfo:
    name: str
    summary: str
    default_w_s: float  # 0: the base method (no local term)
    options: tuple[MethodOption, ...] = field(default=())

    @property
    def is_base(self) -> bool:
        return self.default_w_s == 0


# Settings shared by a family; each MethodInfo lists the ones that apply to it.
_LOCAL = (
    MethodOption("w_s", "Weight of the CO-SSL local term (default: the method's, 0.3 for "
                 "co- methods)."),
    MethodOption("w_s_warmup", "Fraction of training over which w_s ramps up from 0."),
    MethodOption("local_grid", "Pool the feature map to n×n before the local term "
                 "(default: its natural size)."),
    MethodOption("local_hidden", "Hidden size of the local (per-position) heads."),
)
_HEADS = (
    MethodOption("proj_dim", "Output size of the projector (and predictor) heads."),
    MethodOption("proj_hidden", "Hidden size of the global projector."),
)
_CONTRASTIVE = (
    MethodOption("temperature", "InfoNCE temperature."),
    MethodOption("cutpaste", "Add to every image a hard negative, a view of it with a small "
                 "piece cut and pasted elsewhere (CutPaste), so that the embedding changes "
                 "when something small and local appears."),
)
_BOOTSTRAP = (
    MethodOption("pred_hidden", "Hidden size of the global predictor."),
    MethodOption("ema_base", "Starting EMA decay of the target network; rises to 1 on a "
                 "cosine schedule."),
    MethodOption("pred_lr", "Learning rate of the predictors, as a multiple of --lr."),
)
_BOOTSTRAP_LOCAL = (
    MethodOption("local_target", "Target of the local term: g2 (target copy of the local "
                 "head), g1 (the target's global head) or online (the online global "
                 "embedding of the other view, no gradient)."),
)

METHODS: dict[str, MethodInfo] = {}
# docs/recipe.md: the BYOL family learns too slowly on a CPU budget
DEFAULT_METHOD = "co-simclr"


def add_method(info: MethodInfo) -> MethodInfo:
    """Register a method (replacing one of the same name)."""
    METHODS[info.name] = info
    return info


def remove_method(name: str) -> None:
    METHODS.pop(name, None)


def method_names() -> list[str]:
    return list(METHODS)


def method_info(name: str) -> MethodInfo:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]


def all_options() -> dict[str, tuple[MethodOption, list[str]]]:
    """Every declared setting → (its declaration, the methods it applies to), in order."""
    out: dict[str, tuple[MethodOption, list[str]]] = {}
    for info in METHODS.values():
        for opt in info.options:
            out.setdefault(opt.name, (opt, []))[1].append(info.name)
    return out


add_method(MethodInfo("co-simclr", "SimCLR + CO-SSL local term (InfoNCE form)", 0.3,
                      _LOCAL + _HEADS + _CONTRASTIVE))
add_method(MethodInfo("simclr", "SimCLR (Chen et al. 2020): co-simclr with w_s = 0", 0.0,
                      _HEADS + _CONTRASTIVE))
add_method(MethodInfo("co-byol", "BYOL + CO-SSL local term (Aubret et al. 2025)", 0.3,
                      _LOCAL + _HEADS + _BOOTSTRAP + _BOOTSTRAP_LOCAL))
add_method(MethodInfo("byol", "BYOL (Grill et al. 2020): co-byol with w_s = 0", 0.0,
                      _HEADS + _BOOTSTRAP))
