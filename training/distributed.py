"""PyTorch DDP through torchrun: gloo on CPU, NCCL on GPU. One process = a world of one.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; :func:`setup_distributed` reads them, joins the
process group and returns a :class:`Dist` that the loop uses to wrap the model, split the data,
agree on when to stop, and let only rank 0 write.

Learning-rate scaling (:func:`scaled_lr`): ``--lr`` is the peak LR for one process; with N
processes the effective batch is N times larger. LARS follows the linear rule (Goyal et al.
2017, the rule BYOL/SimCLR use with LARS: LR ∝ batch); AdamW the square-root rule (Adam's
update size does not grow with the batch the way SGD's does; Malladi et al. 2022).

Contrastive negatives across processes (:func:`gather_with_grad`, used by the losses):
NT-Xent and the CO-SimCLR local InfoNCE gather every process's embeddings, so each process's
anchors see the negatives of the whole effective batch, as one process holding it would.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist

LR_RULES = {"lars": "linear", "adamw": "sqrt"}


class DistributedSetupError(ValueError):
    """A distributed setting this machine cannot honour (message says the fix)."""


def scaled_lr(optimizer: str, lr: float, world: int) -> tuple[float, str]:
    """The peak LR for ``world`` processes, and the rule's name (none for one process)."""
    rule = LR_RULES.get(optimizer, "none") if world > 1 else "none"
    factor = {"linear": world, "sqrt": math.sqrt(world)}.get(rule, 1.0)
    return lr * factor, rule


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    sync_bn: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP (which broadcasts rank 0's parameters and buffers, so every rank starts
        equal); BatchNorm becomes SyncBatchNorm when asked."""
        if self.world == 1:
            return model
        if self.sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                         find_unused_parameters=False)

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on one. A SIGTERM reaches the ranks at different
        batches; stopping on one rank alone would leave the others waiting in an all-reduce."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def max(self, value: float) -> float:
        """The largest ``value`` over the ranks: the elapsed time that --time-budget and the
        schedules follow must be the same number everywhere, or ranks stop at different steps."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return float(t.item())

    def barrier(self) -> None:
        if self.world > 1:
            tdist.barrier()

    def close(self) -> None:
        if self.world > 1 and tdist.is_initialized():
            tdist.destroy_process_group()


def world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group; (0, 1) when there is none."""
    if tdist.is_available() and tdist.is_initialized():
        return tdist.get_rank(), tdist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward is its adjoint: every process's gradient for the
    gathered tensor is summed (all-reduce) and each process keeps its own slice. That slice is
    d(Σ_ranks loss_r)/d(own rows), so that DDP's average of the parameter gradients is the
    gradient of the mean of the per-rank losses (see :func:`global_mean_value`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, size = tdist.get_rank(), tdist.get_world_size()
        ctx.rows = x.shape[0]
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(size)]
        tdist.all_gather(parts, x)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # gloo has no reduce_scatter: all-reduce the whole (small) gradient, keep own rows
        grad = grad.contiguous().clone()
        tdist.all_reduce(grad, op=tdist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (same shape on every rank) over the ranks in rank order, rank r's
    rows at ``r * len(x)``; gradients flow back to each rank's own rows. A world of one
    returns ``x`` itself."""
    _, size = world()
    if size == 1:
        return x
    if not x.requires_grad:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(size)]
        tdist.all_gather(parts, x)
        return torch.cat(parts)
    return _GatherWithGrad.apply(x)


def global_mean_value(loss: torch.Tensor) -> torch.Tensor:
    """``loss`` (this rank's share of a loss over all ranks' anchors) with the value of the
    mean over the ranks and the gradient of this rank's share. Every rank then reports the
    loss one process holding the whole batch would, while DDP's gradient average stays
    right: the mean over ranks of d(loss_r)/dθ, with the gathered negatives' gradients
    summed back by :class:`_GatherWithGrad`, is d(mean_r loss_r)/dθ."""
    _, size = world()
    if size == 1:
        return loss
    total = loss.detach().clone()
    tdist.all_reduce(total, op=tdist.ReduceOp.SUM)
    return loss + (total / size - loss.detach())


def setup_distributed(sync_bn: bool = False) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        if local >= torch.cuda.device_count():
            raise DistributedSetupError(
                f"process {local} of this machine has no GPU of its own "
                f"({torch.cuda.device_count()} visible); use --nproc "
                f"{torch.cuda.device_count()} or fewer (one process per GPU)")
        torch.cuda.set_device(local)
        device, backend = torch.device("cuda", local), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if sync_bn and device.type != "cuda":
        # PyTorch's SyncBatchNorm runs on GPUs only; fail before joining the group.
        raise DistributedSetupError("--sync-bn needs CUDA GPUs (PyTorch's SyncBatchNorm has "
                                    "no CPU kernel); drop --sync-bn on CPU")
    if not tdist.is_initialized():
        tdist.init_process_group(backend=backend)
    return Dist(rank=rank, world=world, device=device, sync_bn=sync_bn)
