"""Distributed pretraining on 2 CPU processes (torchrun, gloo, loopback).

Run as a script under torchrun, this file is the worker: it runs the ``pretrain`` command
and then dumps the weights that its rank holds, so that the test can compare the ranks
without the product writing anything on ranks other than 0.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from support.folders import write_noise_pngs
from support.ports import free_port

from cossl_edge import rundir

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2"]


# BatchNorm running statistics are buffers, not weights: DDP broadcasts rank 0's at the start
# of every forward, so those of the other ranks (from their own last batch) are never used.
BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _env() -> dict[str, str]:
    # One thread per process: two ranks share the CI machine's cores.
    return dict(os.environ, OMP_NUM_THREADS="1", NO_ALBUMENTATIONS_UPDATE="1")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """32 random-blob 16-px PNGs: 16 per rank, 2 batches of 8 per rank and epoch."""
    return write_noise_pngs(tmp_path_factory.mktemp("tiny"), 32)


def _args(data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return ["pretrain", str(data), "--out", str(out), "--arch", "resnet10", "--width",
            "0.125", "--image-size", "16", "--batch-size", "8", "--max-steps", str(steps),
            # co-byol: the target network's EMA must stay in step across ranks too
            "--method", "co-byol", "--quiet", *extra]


def _run_workers(data: Path, out: Path, dumps: Path, steps: int, *extra: str
                 ) -> subprocess.CompletedProcess:
    cmd = [*TORCHRUN, __file__, str(dumps), *_args(data, out, steps, *extra)]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=240)


def _rank_weights(dumps: Path) -> list[dict[str, torch.Tensor]]:
    return [torch.load(dumps / f"rank-{r}.pt", weights_only=True) for r in (0, 1)]


def _assert_ranks_equal(dumps: Path, out: Path) -> None:
    w0, w1 = _rank_weights(dumps)
    assert w0.keys() == w1.keys() and any(k.startswith("target_") for k in w0)
    weights = [k for k in w0 if not k.endswith(BN_STATS)]
    assert len(weights) > 50
    for k in weights:  # online and target (EMA) parameters alike
        assert torch.equal(w0[k], w1[k]), f"rank weights differ at {k}"
    # rank 0 is the one that wrote the checkpoint: it holds what the ranks hold
    saved = torch.load(out / rundir.LAST_CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(saved[k], w0[k]) for k in w0)


def test_two_ranks_hold_identical_weights_and_resume(tiny_folder, tmp_path):
    out, dumps = tmp_path / "run", tmp_path / "dumps"
    first = _run_workers(tiny_folder, out, dumps, 3)
    assert first.returncode == 0, first.stderr[-3000:]
    _assert_ranks_equal(dumps, out)
    init = torch.load(dumps / "init-rank-1.pt", weights_only=True)
    moved = _rank_weights(dumps)[1]
    assert any(not torch.equal(init[k], moved[k]) for k in init), "training changed nothing"
    facts = json.loads((out / rundir.CONFIG).read_text())
    assert facts["world_size"] == 2 and facts["effective_batch_size"] == 16
    assert facts["lr_scaling"] == "sqrt" and facts["peak_lr"] == pytest.approx(2e-3 * 2**0.5)
    assert "batch 16 · lr 0.00283 (sqrt scaling) (2 processes)" in " ".join(first.stderr.split())
    assert re.findall(r"pretrained: (\d+) steps", first.stdout) == ["3"]  # rank 0 only
    assert not list(out.rglob("*.tmp"))  # every write was atomic and finished

    resumed = _run_workers(tiny_folder, out, dumps, 5, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at epoch 1 step 3" in resumed.stderr
    _assert_ranks_equal(dumps, out)
    state = torch.load(out / rundir.LAST_CHECKPOINT, weights_only=True)["state"]
    assert state["global_step"] == 5 and state["epoch"] == 2
    steps = [json.loads(line)["step"] for line in (out / rundir.METRICS).open()]
    assert steps == sorted(steps) and steps[-1] == 5


def test_nproc_launches_torchrun_and_sigterm_stops_every_rank(tiny_folder, tmp_path):
    """`--nproc 2` execs torchrun; SIGTERM to it reaches both ranks, which agree on the batch
    to stop at (else one would wait for the other in an all-reduce) and rank 0 checkpoints."""
    out = tmp_path / "run"
    args = [a for a in _args(tiny_folder, out, 10_000) if a != "--quiet"]
    cmd = [sys.executable, "-m", "cossl_edge", *args, "--nproc", "2", "--optimizer", "lars",
           "--lr", "0.1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    ckpt = out / rundir.LAST_CHECKPOINT
    deadline = time.time() + 180
    while not ckpt.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    # torchrun itself reports the signal and exits 1 (its convention); the workers stop cleanly
    assert "launching 2 processes" in stderr
    assert "stopped: checkpoint written" in stderr and "--resume" in stderr, stderr[-3000:]
    stopped = re.findall(r"stopped: (\d+) steps", stdout)  # the summary, rank 0 only
    assert len(stopped) == 1 and "--resume" in stdout
    state = torch.load(ckpt, weights_only=True)["state"]
    assert state["global_step"] == int(stopped[0]) > 0
    facts = json.loads((out / rundir.CONFIG).read_text())
    assert facts["world_size"] == 2 and facts["lr_scaling"] == "linear"
    assert facts["peak_lr"] == pytest.approx(0.2) and facts["optimizer"] == "lars"


def _two_nodes(data: Path, out: Path, steps: int, *extra: str) -> list[tuple[int, str, str]]:
    """Two torchrun launches, one process each, meeting at a c10d rendezvous on loopback:
    what two machines do (docs/scaling-and-faults.md), on one."""
    port, run_id = free_port(), f"cossl-test-{os.getpid()}-{steps}"
    args = ["pretrain", str(data), "--out", str(out), "--arch", "resnet10", "--width",
            "0.125", "--image-size", "16", "--batch-size", "8", "--max-steps", str(steps),
            "--method", "co-simclr", "--quiet", *extra]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank",
         str(node), "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint",
         f"127.0.0.1:{port}", "--rdzv_id", run_id, "--rdzv_conf", "join_timeout=60",
         "-m", "cossl_edge", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        for node in (0, 1)]
    outputs = [p.communicate(timeout=240) for p in procs]
    return [(p.returncode, *o) for p, o in zip(procs, outputs, strict=True)]


@pytest.mark.slow
def test_two_nodes_on_loopback_train_and_resume(tiny_folder, tmp_path):
    """An external torchrun per "node" (--nnodes 2, c10d rendezvous on 127.0.0.1): global
    ranks from the rendezvous, one summary and one writer (global rank 0), and a resume."""
    out = tmp_path / "run"
    for steps, extra in ((2, ()), (3, ("--resume",))):
        nodes = _two_nodes(tiny_folder, out, steps, *extra)
        assert all(rc == 0 for rc, _, _ in nodes), [err[-2000:] for _, _, err in nodes]
        summaries = [o for _, o, _ in nodes if "pretrained:" in o]
        assert len(summaries) == 1  # from global rank 0 only, whichever node it is on
        assert re.findall(r"pretrained: (\d+) steps", summaries[0]) == [str(steps)]
        errors = " ".join(" ".join(err.split()) for _, _, err in nodes)
        assert "batch 16 · lr 0.00283 (sqrt scaling) (2 processes)" in errors
    assert "resuming at epoch 0 step 2" in errors
    facts = json.loads((out / rundir.CONFIG).read_text())
    assert facts["world_size"] == 2 and facts["effective_batch_size"] == 16
    state = torch.load(out / rundir.LAST_CHECKPOINT, weights_only=True)["state"]
    assert state["global_step"] == 3
    assert not list(out.rglob("*.tmp"))


def test_relaunch_args_rebuild_the_command_without_nproc():
    import typer

    from cossl_edge.commands.pretrain import register
    from cossl_edge.commands.relaunch import relaunch_args

    app = typer.Typer()
    register(app)
    cmd = typer.main.get_command(app)
    args = ["data", "--out", "o", "--method", "byol", "--nproc", "4", "--resume", "--sync-bn"]
    with cmd.make_context("pretrain", list(args)) as ctx:
        rebuilt = relaunch_args(ctx)
    assert "--nproc" not in rebuilt and rebuilt[0] == "data"
    for pair in (["--out", "o"], ["--method", "byol"]):
        i = rebuilt.index(pair[0])
        assert rebuilt[i:i + 2] == pair
    assert "--resume" in rebuilt and "--sync-bn" in rebuilt
    assert "--bf16" not in rebuilt and "--no-bf16" not in rebuilt  # auto: each worker times
    with cmd.make_context("pretrain", rebuilt) as ctx:  # what the workers will parse
        assert ctx.params["method"].value == "byol" and ctx.params["nproc"] == 1
    for flag in ("--bf16", "--no-bf16"):  # a forced precision travels
        with cmd.make_context("pretrain", [*args, flag]) as ctx:
            assert flag in relaunch_args(ctx)


def test_lr_scaling_rules():
    from cossl_edge.training.distributed import scaled_lr

    assert scaled_lr("adamw", 1e-3, 1) == (1e-3, "none")
    assert scaled_lr("adamw", 1e-3, 4) == (pytest.approx(2e-3), "sqrt")
    assert scaled_lr("lars", 0.3, 8) == (pytest.approx(2.4), "linear")


def test_sync_bn_on_cpu_is_a_clear_error(monkeypatch):
    from cossl_edge.training.distributed import DistributedSetupError, setup_distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DistributedSetupError, match="drop --sync-bn"):
        setup_distributed(sync_bn=True)


def _worker(dumps: Path, argv: list[str]) -> None:
    """Run the CLI; keep the method the loop builds; dump its weights for this rank."""
    import cossl_edge.training.loop as loop
    from cossl_edge.cli import app

    built: list[torch.nn.Module] = []
    build = loop.build_method

    def keep(config):
        method = build(config)
        built.append(method)
        return method

    loop.build_method = keep
    rank = os.environ["RANK"]
    original_setup = loop.setup_distributed

    def setup(sync_bn: bool = False):
        dist = original_setup(sync_bn)
        wrap = dist.wrap

        def wrap_and_dump(model):  # the weights each rank starts from, after DDP's broadcast
            wrapped = wrap(model)
            torch.save(model.state_dict(), dumps / f"init-rank-{rank}.pt")
            return wrapped
        dist.wrap = wrap_and_dump
        return dist

    loop.setup_distributed = setup
    dumps.mkdir(parents=True, exist_ok=True)
    app(argv, standalone_mode=False)
    torch.save(built[0].state_dict(), dumps / f"rank-{rank}.pt")


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), sys.argv[2:])
