"""`--bf16 auto`: the faster precision, timed on a copy of the run's model; the choice is
printed, kept in config.json, kept on resume, and `--bf16`/`--no-bf16` force it."""

from __future__ import annotations

import json

import pytest
import torch

from cossl_edge import rundir
from cossl_edge.contract import PreprocessContract
from cossl_edge.training import precision
from cossl_edge.training.config import PretrainConfig
from cossl_edge.training.methods import build_method
from cossl_edge.training.optim import build_optimizer

CPU = torch.device("cpu")


def fake_timer(fp32_s: float, bf16_s: float, calls: list | None = None):
    """A timer that does not run the step: each precision takes the given seconds."""
    def timer(step, bf16: bool) -> float:
        if calls is not None:
            calls.append(bf16)
        return bf16_s if bf16 else fp32_s
    return timer


def tiny_method():
    cfg = PretrainConfig(arch="resnet10", width=0.25, proj_hidden=32, pred_hidden=32,
                         local_hidden=16, proj_dim=16, contract=PreprocessContract(size=16))
    torch.manual_seed(0)
    return build_method(cfg).to(memory_format=torch.channels_last)


def make_optimizer(m):
    return build_optimizer("adamw", m, 1e-3, 1e-4)


def views(n: int = 8, size: int = 16):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(n, 1, size, size, generator=g).contiguous(
        memory_format=torch.channels_last) for _ in range(2)]


@pytest.mark.parametrize("fp32_s, bf16_s, want, batch", [
    (0.20, 0.10, True, 8), (0.10, 0.30, False, 2), (0.30, 0.10, True, 2),
    (0.20, 0.195, False, 8)])
def test_auto_picks_the_faster_with_a_fake_timer(fp32_s, bf16_s, want, batch):
    """bf16 where it is faster, fp32 where it is slower — or saves less than the margin.
    More than twice slower on the quarter batch (2 of 8) decides without the full batch."""
    calls: list[bool] = []
    choice = precision.resolve(None, tiny_method(), make_optimizer, views(), CPU,
                               timer=fake_timer(fp32_s, bf16_s, calls))
    assert choice.bf16 is want and choice.how == "measured" and choice.batch == batch
    assert choice.step_s == {"fp32": fp32_s, "bf16": bf16_s}
    assert len(calls) == (4 if batch == 2 else 4 + 2 + 2 * precision.MAX_ROUNDS)
    assert ("bf16 autocast" if want else "fp32") in choice.describe()


def test_forced_choice_times_nothing():
    def timer(step, bf16):
        raise AssertionError("a forced precision must not be timed")
    for forced in (True, False):
        choice = precision.resolve(forced, tiny_method(), make_optimizer, views(), CPU,
                                   timer=timer)
        assert choice.bf16 is forced and choice.how == "forced" and choice.probe_s == 0.0


def test_measure_warms_up_interleaves_and_agrees_on_the_rounds():
    calls: list[bool] = []
    agreed: list[float] = []

    def agree(x: float) -> float:  # e.g. the slowest of the processes
        agreed.append(x)
        return 2 * x

    # warm-up 0.3 s, agreed 0.6 s: 3 s fit 5 rounds, capped at MAX_ROUNDS
    got = precision.measure(fake_timer(0.1, 0.2, calls), fake_timer(0.1, 0.2, calls),
                            max_seconds=3.0, agree=agree)
    assert got == {"fp32": 0.2, "bf16": 0.4}
    assert calls[:2] == [False, True]  # the warm-up, one step each
    assert len(calls) == 2 + 2 * precision.MAX_ROUNDS
    assert calls[2:6] == [False, True, True, False]  # interleaved, order alternating
    calls.clear()
    precision.measure(None, fake_timer(1.0, 5.0, calls), max_seconds=3.0)
    assert len(calls) == 4  # slow steps: the warm-up and one timed round


def test_the_real_probe_leaves_the_run_untouched():
    """Weights, BatchNorm statistics, optimiser state and the global random stream are as
    they were: the probe trains a copy."""
    method = tiny_method()
    opt = make_optimizer(method)
    before = {k: v.clone() for k, v in method.state_dict().items()}
    rng = torch.get_rng_state()
    choice = precision.resolve(None, method, make_optimizer, views(), CPU, max_seconds=0.5)
    assert choice.how == "measured" and set(choice.step_s) == {"fp32", "bf16"}
    assert all(t > 0 for t in choice.step_s.values()) and choice.probe_s > 0
    after = method.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert opt.state_dict()["state"] == {}
    assert torch.equal(torch.get_rng_state(), rng)


def _run(shapes_dir, out, *extra):
    from typer.testing import CliRunner

    from cossl_edge.cli import app

    result = CliRunner().invoke(app, [
        "pretrain", str(shapes_dir), "--out", str(out), "--arch", "resnet10", "--width",
        "0.25", "--image-size", "16", "--batch-size", "16", "--proj-dim", "16",
        "--proj-hidden", "32", "--local-hidden", "16", "--quiet", *extra])
    assert result.exit_code == 0, result.output
    return result.output, json.loads((out / rundir.CONFIG).read_text())


@pytest.mark.parametrize("bf16_faster", [True, False])
def test_cli_records_the_choice_and_resume_keeps_it(shapes_dir, tmp_path, monkeypatch,
                                                    bf16_faster):
    fast, slow = 0.05, 0.2
    monkeypatch.setattr(precision, "clock_timer", lambda device: fake_timer(
        slow if bf16_faster else fast, fast if bf16_faster else slow))
    out = tmp_path / "run"
    output, cfg = _run(shapes_dir, out, "--max-steps", "1")
    name = "bf16 autocast" if bf16_faster else "fp32"
    assert f"precision: {name} (auto" in output
    assert cfg["bf16"] is None and cfg["bf16_resolved"] is bf16_faster
    assert cfg["bf16_choice"]["how"] == "measured"
    assert cfg["bf16_choice"]["step_s"] == {"fp32": slow if bf16_faster else fast,
                                            "bf16": fast if bf16_faster else slow}
    # resumed on a machine where the other precision would win: the run keeps its choice
    monkeypatch.setattr(precision, "clock_timer", lambda device: fake_timer(
        fast if bf16_faster else slow, slow if bf16_faster else fast))
    output, cfg = _run(shapes_dir, out, "--max-steps", "2", "--resume")
    assert f"precision: {name} (kept" in output
    assert cfg["bf16_resolved"] is bf16_faster and cfg["bf16_choice"]["how"] == "measured"


def test_cli_flags_force_the_precision(shapes_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "clock_timer", lambda device: fake_timer(0.01, 1.0))
    for flag, want in (("--bf16", True), ("--no-bf16", False)):
        _, cfg = _run(shapes_dir, tmp_path / flag, "--max-steps", "1", flag)
        assert cfg["bf16"] is want and cfg["bf16_resolved"] is want
        assert cfg["bf16_choice"]["how"] == "forced"


def test_old_run_configs_load_with_their_precision(tmp_path):
    cfg = PretrainConfig(bf16=True)
    cfg.save(tmp_path / "c.json")
    assert PretrainConfig.load(tmp_path / "c.json").bf16 is True
    PretrainConfig().save(tmp_path / "a.json", {"bf16_resolved": True})
    assert PretrainConfig.load(tmp_path / "a.json").bf16 is True


def test_the_probe_draws_its_batch_as_the_epochs_do(shapes_dir, tmp_path, monkeypatch):
    """The probe's batch comes from the batched views (``TwoViews.batch``), as every epoch's
    do: the per-image pipelines are never built in an auto run."""
    from cossl_edge.training.views import TwoViews

    def per_image(self):
        raise AssertionError("the per-image views were built")

    monkeypatch.setattr(TwoViews, "per_image", property(per_image))
    monkeypatch.setattr(precision, "clock_timer", lambda device: fake_timer(0.05, 0.2))
    _, cfg = _run(shapes_dir, tmp_path / "run", "--max-steps", "1")
    assert cfg["bf16_choice"]["how"] == "measured"
    assert cfg["bf16_choice"]["batch"] in (4, 16)  # the screen's quarter or the full batch
