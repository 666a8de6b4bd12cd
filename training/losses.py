"""CO-SSL losses as pure functions.

BYOL (Grill et al. 2020) and SimCLR (Chen et al. 2020) global terms, and the CO-SSL local term
(Aubret, Teulière, Triesch, "Seeing the Whole in the Parts in Self-Supervised Representation
Learning", 2025, Eq. 2): every local vector of view a, through its own head, predicts the
global embedding of view b.

With several processes (torchrun/DDP), NT-Xent and the local InfoNCE gather the embeddings of
every process (:func:`~cossl_edge.training.distributed.gather_with_grad`): each process's
anchors are its own rows, their positives sit at ``rank * local_batch`` in the gathered
batch, and their negatives are those of the whole effective batch. Each process returns the
value of the loss of one process holding the concatenated batch, and the gradient of its own
anchors' share, so DDP's gradient average is that process's gradient.

>>> import torch
>>> p, z = torch.randn(4, 8), torch.randn(4, 8)
>>> bool(co_byol_loss(p, z, torch.randn(4, 9, 8), torch.randn(4, 8), w_s=0.0) == byol_loss(p, z))
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cossl_edge.training.distributed import gather_with_grad, global_mean_value, world


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of 2 − 2·cos(q, sg(z)) over the batch (B×D, B×D). The target gets no gradient."""
    return (2 - 2 * F.cosine_similarity(prediction, target.detach(), dim=-1)).mean()


def co_local_loss(local_predictions: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CO-SSL local term for BYOL: mean over images and positions of
    2 − 2·cos(q2(g2(y_i^a)), sg(t^b)); local_predictions B×N×D, target B×D."""
    cos = F.cosine_similarity(local_predictions, target.detach().unsqueeze(1), dim=-1)
    return (2 - 2 * cos).mean()


def co_byol_loss(prediction: torch.Tensor, target: torch.Tensor,
                 local_predictions: torch.Tensor | None, local_target: torch.Tensor | None,
                 w_s: float, terms: dict | None = None) -> torch.Tensor:
    """(1 − w_s)·L_global + w_s·L_local for one direction (a predicts b).

    With ``w_s == 0`` the local term is not computed at all: the result is BYOL's loss, bit
    for bit, which is how ``byol`` is defined in this project. ``terms``, when given, gets
    the two terms' values added (``global``, ``local``; floats, unweighted).
    """
    global_term = byol_loss(prediction, target)
    if w_s == 0:
        _add_terms(terms, global_term)
        return global_term
    local_term = co_local_loss(local_predictions, local_target)
    _add_terms(terms, global_term, local_term)
    return (1 - w_s) * global_term + w_s * local_term


def _add_terms(terms: dict | None, global_term: torch.Tensor,
               local_term: torch.Tensor | None = None) -> None:
    if terms is None:
        return
    terms["global"] = terms.get("global", 0.0) + float(global_term.detach())
    if local_term is not None:
        terms["local"] = terms.get("local", 0.0) + float(local_term.detach())


def nt_xent_loss(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float,
                 extra_negatives: torch.Tensor | None = None) -> torch.Tensor:
    """SimCLR's normalised-temperature cross entropy over 2B embeddings: each embedding's
    positive is the other view of its image, its negatives the other 2B − 2 embeddings and,
    when given, every row of ``extra_negatives`` (M×D, e.g. hard negatives).

    With W processes, B is the whole batch (W × the local one): every process's embeddings
    and extra negatives are gathered, and this process's 2 × local rows are the anchors."""
    rank, size = world()
    n = z_a.shape[0]
    mine = F.normalize(torch.cat([z_a, z_b]), dim=-1)  # this process's anchors
    if size == 1:
        z = mine
    else:  # [all views a; all views b], rank r's rows at r·n and W·n + r·n
        z = F.normalize(torch.cat([gather_with_grad(z_a), gather_with_grad(z_b)]), dim=-1)
    total = n * size
    logits = mine @ z.t() / temperature
    rows = torch.cat([torch.arange(n), torch.arange(total, total + n)]) + rank * n
    rows = rows.to(z.device)
    logits = logits.masked_fill(rows[:, None] == torch.arange(2 * total, device=z.device),
                                float("-inf"))
    if extra_negatives is not None:
        negatives = F.normalize(gather_with_grad(extra_negatives), dim=-1)
        logits = torch.cat([logits, mine @ negatives.t() / temperature], 1)
    targets = (rows + total) % (2 * total)  # the other view of the same image
    return global_mean_value(F.cross_entropy(logits, targets))


def co_info_nce_local_loss(local_queries: torch.Tensor, keys: torch.Tensor,
                           temperature: float) -> torch.Tensor:
    """CO-SSL local term, InfoNCE form: each local vector of view a (B×N×D) is a query whose
    positive is the global embedding of view b of the same image (keys B×D, no gradient) and
    whose negatives are the other images' global embeddings — with W processes, those of all
    processes (the keys are gathered; this process's queries only)."""
    rank, _ = world()
    q = F.normalize(local_queries, dim=-1)
    k = F.normalize(gather_with_grad(keys.detach()), dim=-1)
    b, n, _ = q.shape
    logits = torch.einsum("bnd,kd->bnk", q, k) / temperature
    targets = (torch.arange(b, device=q.device) + rank * b).repeat_interleave(n)
    return global_mean_value(F.cross_entropy(logits.reshape(b * n, k.shape[0]), targets))


def co_simclr_loss(z_a: torch.Tensor, z_b: torch.Tensor, local_a: torch.Tensor | None,
                   local_b: torch.Tensor | None, w_s: float, temperature: float,
                   extra_negatives: torch.Tensor | None = None,
                   terms: dict | None = None) -> torch.Tensor:
    """(1 − w_s)·NT-Xent + w_s·(symmetric local InfoNCE). ``w_s == 0`` is SimCLR exactly.
    ``extra_negatives`` join the global term's negatives. ``terms``, when given, gets the
    two terms' values (``global``, ``local``; floats, unweighted)."""
    global_term = nt_xent_loss(z_a, z_b, temperature, extra_negatives)
    if w_s == 0:
        _add_terms(terms, global_term)
        return global_term
    local_term = 0.5 * (co_info_nce_local_loss(local_a, z_b, temperature)
                        + co_info_nce_local_loss(local_b, z_a, temperature))
    _add_terms(terms, global_term, local_term)
    return (1 - w_s) * global_term + w_s * local_term
