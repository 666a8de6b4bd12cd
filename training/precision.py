"""``--bf16 auto``: time a few training steps in fp32 and in bf16 autocast, train in the faster.

Which precision is faster depends on the machine, not on the model alone: a CPU with
AVX-512 BF16 or AMX runs bf16 autocast about 1.4× faster than fp32 on the default recipe,
one with AVX2 only emulates bf16 and runs it several times slower, and a GPU at the
recipe's small widths is launch-bound (``docs/benchmarks.md``). So the choice is measured at
the start of every new run, on the run's own model, batch and device:

- the probe steps a *copy* of the method with its own optimiser: the run's weights,
  BatchNorm statistics, optimiser state and global random streams are as before;
- first a screen on a quarter of the batch: one warm-up step of each precision (first
  calls allocate and pick kernels) and one timed step each. Where one precision is more
  than ``SCREEN_RATIO`` times slower there, it is decided: a CPU without bf16 instructions
  runs bf16 about ten times slower, and a full batch of it would cost seconds per step;
- else the full batch: a warm-up step of each, then interleaved timed rounds, as many as fit
  in ``max_seconds`` (at least one, at most ``MAX_ROUNDS``); each precision's fastest step
  counts (the minimum is the least disturbed by other processes on a shared machine);
- bf16 is chosen only when it is faster by more than ``MARGIN``: within it, fp32 (exact
  arithmetic) wins.

The timing function is injectable (``timer``), so the choice can be tested without timing.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from cossl_edge import rundir

if TYPE_CHECKING:
    from cossl_edge.training.config import PretrainConfig
    from cossl_edge.training.dataset import TrainingData

MARGIN = 0.05  # bf16 must save more than 5% of a step to be chosen
MAX_ROUNDS = 3
SCREEN_RATIO = 2.0  # on the quarter batch: this much slower loses without a full-batch test
MAX_SECONDS = 3.0  # timed rounds: as many as the warm-up steps say fit in this time

# A step of the probe: run(bf16) does one full training step in that precision.
StepFn = Callable[[bool], None]
# The timing function: (step, bf16) → seconds that step took. The default runs it once on
# the clock, with a device synchronisation on CUDA; tests pass a fake one.
Timer = Callable[[StepFn, bool], float]


@dataclass
class PrecisionChoice:
    bf16: bool
    how: str  # measured | forced | unsupported | resumed
    step_s: dict[str, float] = field(default_factory=dict)  # fastest step per precision
    probe_s: float = 0.0  # wall time the probe took (inside the run's time budget)
    batch: int = 0  # the batch the deciding steps were timed on (a quarter: the screen)
    resumed: bool = False  # kept from the run's start (config.json), not chosen now

    def to_dict(self) -> dict:
        return {"how": self.how, "step_s": {k: round(v, 5) for k, v in self.step_s.items()},
                "batch": self.batch, "probe_s": round(self.probe_s, 3)}

    def describe(self) -> str:
        name = "bf16 autocast" if self.bf16 else "fp32"
        if self.resumed:
            return f"precision: {name} (kept from the run's start: {self.how})"
        if self.how == "measured":
            f, b = self.step_s["fp32"], self.step_s["bf16"]
            return (f"precision: {name} (auto: a step of {self.batch} took {1e3 * f:.0f} ms "
                    f"in fp32, {1e3 * b:.0f} ms in bf16; --bf16/--no-bf16 to choose)")
        if self.how == "unsupported":
            return f"precision: {name} (auto: this device has no bf16)"
        return f"precision: {name} ({self.how})"


def choose(step_s: dict[str, float], margin: float = MARGIN) -> bool:
    """True (bf16) when its step is faster than fp32's by more than ``margin``."""
    return step_s["bf16"] < (1.0 - margin) * step_s["fp32"]


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"  # oneDNN runs bf16 autocast on any x86/ARM CPU


def clock_timer(device: torch.device) -> Timer:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timer(step: StepFn, bf16: bool) -> float:
        sync()
        t0 = time.perf_counter()
        step(bf16)
        sync()
        return time.perf_counter() - t0

    return timer


def measure(step: StepFn, timer: Timer, max_seconds: float = MAX_SECONDS,
            agree: Callable[[float], float] = float, max_rounds: int = MAX_ROUNDS
            ) -> dict[str, float]:
    """The fastest step of each precision: a warm-up step of each, then interleaved timed
    rounds. The number of rounds follows from the warm-up steps' time, passed through
    ``agree`` (the largest over the processes of a distributed run, so every process runs
    the same number of steps: a step of a distributed loss is a collective call)."""
    warm = timer(step, False) + timer(step, True)
    rounds = int(max(1, min(max_rounds, max_seconds // max(agree(warm), 1e-9))))
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for r in range(rounds):
        for bf16 in ((False, True) if r % 2 == 0 else (True, False)):
            times["bf16" if bf16 else "fp32"].append(timer(step, bf16))
    return {k: agree(min(v)) for k, v in times.items()}


def training_steps(method: torch.nn.Module, make_optimizer: Callable,
                   device: torch.device) -> Callable[[Sequence], StepFn]:
    """``for_views(views)`` → one step of the training loop on ``views`` (forward under
    autocast, backward, optimiser step, EMA update), on a copy of ``method`` with its own
    optimiser from ``make_optimizer``."""
    probe = copy.deepcopy(method)
    probe.train()
    optimizer = make_optimizer(probe)
    casts = {True: torch.autocast(device.type, dtype=torch.bfloat16), False: nullcontext()}

    def for_views(views: Sequence) -> StepFn:
        def step(bf16: bool) -> None:
            with casts[bf16]:
                loss, _ = probe(*views)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            probe.momentum_update(0.99)
        return step

    return for_views


def resolve(requested: bool | None, method: torch.nn.Module, make_optimizer: Callable,
            views: Sequence, device: torch.device, timer: Timer | None = None,
            agree: Callable[[float], float] = float,
            max_seconds: float = MAX_SECONDS) -> PrecisionChoice:
    """The run's precision: ``requested`` when it is True/False (``--bf16``/``--no-bf16``),
    else (``None``, auto) the faster of the two measured on ``method`` and ``views``."""
    if requested is not None:
        return PrecisionChoice(bool(requested), "forced")
    if not bf16_supported(device):
        return PrecisionChoice(False, "unsupported")
    t0 = time.perf_counter()
    rng_cpu = torch.get_rng_state()
    rng_cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    timer = timer or clock_timer(device)
    full = len(views[0])
    quarter = max(2, full // 4)
    try:
        step_on = training_steps(method, make_optimizer, device)
        batch, step_s = quarter, measure(step_on([v[:quarter] for v in views]), timer,
                                         max_seconds, agree, max_rounds=1)
        if max(step_s.values()) <= SCREEN_RATIO * min(step_s.values()) and quarter < full:
            batch, step_s = full, measure(step_on(views), timer, max_seconds, agree)
    finally:
        torch.set_rng_state(rng_cpu)
        if rng_cuda is not None:
            torch.cuda.set_rng_state_all(rng_cuda)
    return PrecisionChoice(choose(step_s), "measured", step_s, time.perf_counter() - t0,
                           batch)


def choose_precision(config: PretrainConfig, out: Path, resume: bool, method,
                     data: TrainingData, device: torch.device, dist,
                     peak_lr: float) -> PrecisionChoice:
    """bf16 or fp32: forced by ``--bf16``/``--no-bf16``; kept from the run when resumed;
    else (auto) timed on a copy of the model with one batch of this run's views
    (this module)."""
    from cossl_edge.training.dataset import VIEWS, stream_seed
    from cossl_edge.training.layout import layout_of
    from cossl_edge.training.optim import build_optimizer

    if resume:
        saved = json.loads((out / rundir.CONFIG).read_text()).get("bf16_choice") or {}
        return PrecisionChoice(bool(config.bf16), saved.get("how", "forced"),
                               saved.get("step_s", {}), saved.get("probe_s", 0.0),
                               resumed=True)
    views = None
    if config.bf16 is None:
        # the probe's views draw from a stream of their own; every epoch reseeds the views.
        # One batch as the epochs draw theirs (a list of indices: TwoViews.batch)
        data.dataset.views.reseed(stream_seed(config.seed, VIEWS, dist.rank, -1, 0))
        views = [v.to(device, memory_format=layout_of(v))
                 for v in data.dataset[list(range(data.batch))]]
    return resolve(
        config.bf16, method, lambda m: build_optimizer(config.optimizer, m, peak_lr,
                                                       config.weight_decay),
        views, device, agree=dist.max)
