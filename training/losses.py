"""CO-SSL losses as pure functions.

BYOL (Grill et al. 2020) and SimCLR (Chen et al. 2020) global terms, and the CO-SSL local term
(Aubret, Teulière, Triesch, "Seeing the Whole in the Parts in Self-Supervised Representation
Learning", 2025, Eq. 2): every local vector of view a, through its own head, predicts the
global embedding of view b.

>>> import torch
>>> p, z = torch.randn(4, 8), torch.randn(4, 8)
>>> bool(co_byol_loss(p, z, torch.randn(4, 9, 8), torch.randn(4, 8), w_s=0.0) == byol_loss(p, z))
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
                 w_s: float) -> torch.Tensor:
    """(1 − w_s)·L_global + w_s·L_local for one direction (a predicts b).

    With ``w_s == 0`` the local term is not computed at all: the result is BYOL's loss, bit
    for bit, which is how ``byol`` is defined in this project.
    """
    global_term = byol_loss(prediction, target)
    if w_s == 0:
        return global_term
    return (1 - w_s) * global_term + w_s * co_local_loss(local_predictions, local_target)


def nt_xent_loss(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float,
                 extra_negatives: torch.Tensor | None = None) -> torch.Tensor:
    """SimCLR's normalised-temperature cross entropy over 2B embeddings: each embedding's
    positive is the other view of its image, its negatives the other 2B − 2 embeddings and,
    when given, every row of ``extra_negatives`` (M×D, e.g. hard negatives)."""
    z = F.normalize(torch.cat([z_a, z_b]), dim=-1)
    n = z_a.shape[0]
    logits = z @ z.t() / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    if extra_negatives is not None:
        logits = torch.cat([logits, z @ F.normalize(extra_negatives, dim=-1).t() / temperature], 1)
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


def co_info_nce_local_loss(local_queries: torch.Tensor, keys: torch.Tensor,
                           temperature: float) -> torch.Tensor:
    """CO-SSL local term, InfoNCE form: each local vector of view a (B×N×D) is a query whose
    positive is the global embedding of view b of the same image (keys B×D, no gradient) and
    whose negatives are the other images' global embeddings."""
    q = F.normalize(local_queries, dim=-1)
    k = F.normalize(keys.detach(), dim=-1)
    b, n, _ = q.shape
    logits = torch.einsum("bnd,kd->bnk", q, k) / temperature
    targets = torch.arange(b, device=q.device).repeat_interleave(n)
    return F.cross_entropy(logits.reshape(b * n, b), targets)


def co_simclr_loss(z_a: torch.Tensor, z_b: torch.Tensor, local_a: torch.Tensor | None,
                   local_b: torch.Tensor | None, w_s: float, temperature: float,
                   extra_negatives: torch.Tensor | None = None) -> torch.Tensor:
    """(1 − w_s)·NT-Xent + w_s·(symmetric local InfoNCE). ``w_s == 0`` is SimCLR exactly.
    ``extra_negatives`` join the global term's negatives."""
    global_term = nt_xent_loss(z_a, z_b, temperature, extra_negatives)
    if w_s == 0:
        return global_term
    local_term = 0.5 * (co_info_nce_local_loss(local_a, z_b, temperature)
                        + co_info_nce_local_loss(local_b, z_a, temperature))
    return (1 - w_s) * global_term + w_s * local_term
