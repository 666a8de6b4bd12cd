"""Contrastive negatives across processes: two gloo processes with batch b each give the loss
and the (DDP-averaged) gradients of one process holding the concatenated batch 2b.

The two processes are spawned on loopback (torch.multiprocessing, a free TCP port); each
wraps a model in DistributedDataParallel, computes the loss on its half of a global batch,
and dumps the loss and the averaged parameter gradients. The reference runs here, in the
test process, without a process group.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from support.ports import free_port
from torch import nn

from cossl_edge.training.losses import co_info_nce_local_loss, co_simclr_loss, nt_xent_loss

B = 4  # images per process
WORLD = 2
T = 0.2


class Tiny(nn.Module):
    """A projector and/or a local projector, only those the case uses (DDP without
    find_unused_parameters skips averaging when a parameter gets no gradient); forward is
    the loss, as in the product's methods, so that DDP wraps what is differentiated."""

    def __init__(self, case: str):
        super().__init__()
        self.case = case
        self.proj = nn.Linear(12, 8) if case != "local" else None
        self.local = nn.Linear(12, 8) if case in ("local", "co-simclr") else None

    def forward(self, x_a, x_b, neg, l_a, l_b, keys):
        if self.case == "simclr":  # NT-Xent (simclr, co-simclr's global term)
            return nt_xent_loss(self.proj(x_a), self.proj(x_b), T)
        if self.case == "simclr-negatives":  # NT-Xent with hard (CutPaste) negatives
            return nt_xent_loss(self.proj(x_a), self.proj(x_b), T, self.proj(neg))
        if self.case == "local":  # the CO-SimCLR local InfoNCE (keys carry no gradient)
            return co_info_nce_local_loss(self.local(l_a), keys, T)
        # co-simclr: both terms, both directions, hard negatives
        return co_simclr_loss(self.proj(x_a), self.proj(x_b), self.local(l_a), self.local(l_b),
                              0.3, T, self.proj(neg))


CASES = ("simclr", "simclr-negatives", "local", "co-simclr")


def _global_batch() -> dict[str, torch.Tensor]:
    """The concatenated batch (2b images), the same in every process."""
    g = torch.Generator().manual_seed(1)
    n = B * WORLD
    return {"x_a": torch.randn(n, 12, generator=g), "x_b": torch.randn(n, 12, generator=g),
            "neg": torch.randn(n, 12, generator=g), "l_a": torch.randn(n, 5, 12, generator=g),
            "l_b": torch.randn(n, 5, 12, generator=g), "keys": torch.randn(n, 8, generator=g)}


def _method() -> nn.Module:
    """The product's co-simclr with CutPaste negatives, tiny. Evaluation mode: BatchNorm then
    uses its running statistics, the only part of the model that depends on how the batch is
    split (without --sync-bn); the loss's own dependence on the split is what is tested."""
    from cossl_edge.contract import PreprocessContract
    from cossl_edge.training.config import PretrainConfig
    from cossl_edge.training.methods import build_method  # imports MONAI: only here

    torch.manual_seed(0)
    config = PretrainConfig(method="co-simclr", arch="resnet10", width=0.125, proj_hidden=32,
                            proj_dim=16, local_hidden=16, cutpaste=True, temperature=T,
                            contract=PreprocessContract(size=16))
    return build_method(config).eval()


def _images() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(2)
    return tuple(torch.randn(B * WORLD, 1, 16, 16, generator=g) for _ in range(3))


def _loss_and_grads(model: nn.Module, inputs) -> tuple[float, dict[str, torch.Tensor]]:
    out = model(*inputs)
    loss = out[0] if isinstance(out, tuple) else out
    loss.backward()
    module = getattr(model, "module", model)
    grads = {k: p.grad.detach().clone() for k, p in module.named_parameters()
             if p.grad is not None}
    return float(loss.detach()), grads


def _reference(cases: tuple[str, ...]) -> dict[str, tuple[float, dict]]:
    batch = _global_batch()
    results = {}
    for case in cases:
        torch.manual_seed(0)
        model, inputs = (_method(), _images()) if case == "method" else \
            (Tiny(case), list(batch.values()))
        results[case] = _loss_and_grads(model, inputs)
    return results


def _worker(rank: int, port: int, out: str, cases: tuple[str, ...]) -> None:
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                             world_size=WORLD)
    try:
        mine = slice(rank * B, (rank + 1) * B)
        batch = [t[mine] for t in _global_batch().values()]
        results = {}
        for case in cases:
            torch.manual_seed(0)
            model, inputs = (_method(), [x[mine] for x in _images()]) if case == "method" \
                else (Tiny(case), batch)
            results[case] = _loss_and_grads(nn.parallel.DistributedDataParallel(model), inputs)
        torch.save(results, Path(out) / f"rank-{rank}.pt")
        # neither rank tears gloo down while the other still talks to it (a rank that did
        # aborted now and then on a loaded machine: SIGABRT in gloo's threads)
        tdist.barrier()
    finally:
        tdist.destroy_process_group()


def _two_processes(out: Path, cases: tuple[str, ...]) -> list[dict]:
    mp.spawn(_worker, args=(free_port(), str(out), cases), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank-{r}.pt", weights_only=True) for r in range(WORLD)]


def _assert_equal(two: list[dict], one: dict) -> None:
    for case, (loss, grads) in one.items():
        assert grads and all(g.abs().sum() > 0 for g in grads.values())
        for rank, results in enumerate(two):
            rank_loss, rank_grads = results[case]
            assert rank_loss == pytest.approx(loss, abs=1e-5), f"{case}: rank {rank} loss"
            assert rank_grads.keys() == grads.keys()
            for k in grads:
                torch.testing.assert_close(
                    rank_grads[k], grads[k], atol=1e-5, rtol=1e-5,
                    msg=lambda m, k=k, r=rank, c=case: f"{c}: rank {r} gradient of {k}: {m}")


@pytest.fixture(scope="module")
def one_process() -> dict:
    assert not tdist.is_initialized()  # the reference is a world of one
    return _reference(CASES)


def test_two_processes_equal_one_with_the_concatenated_batch(tmp_path, one_process):
    """NT-Xent (simclr), NT-Xent with hard negatives, the local InfoNCE, and co-simclr's
    whole loss: same loss on every rank, same averaged gradients, to 1e-5."""
    _assert_equal(_two_processes(tmp_path, CASES), one_process)


@pytest.mark.slow
def test_co_simclr_method_under_ddp_equals_one_process(tmp_path):
    """The product's CoSimCLR (backbone, heads, CutPaste negatives) wrapped in DDP as the
    loop does. Slower: each process imports MONAI."""
    _assert_equal(_two_processes(tmp_path, ("method",)), _reference(("method",)))


def test_per_process_negatives_would_differ(one_process):
    """The test above can tell: NT-Xent over each process's half alone is another loss."""
    batch = _global_batch()
    torch.manual_seed(0)
    proj = Tiny("simclr").proj
    with torch.no_grad():
        halves = [nt_xent_loss(proj(batch["x_a"][s]), proj(batch["x_b"][s]), T)
                  for s in (slice(0, B), slice(B, 2 * B))]
    assert float(sum(halves) / 2) != pytest.approx(one_process["simclr"][0], abs=1e-3)
