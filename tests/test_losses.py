import math

import pytest
import torch

from cossl_edge.training.losses import (
    byol_loss,
    co_byol_loss,
    co_info_nce_local_loss,
    co_local_loss,
    co_simclr_loss,
    nt_xent_loss,
)


def test_byol_loss_values():
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # cos = 1 and 0 → losses 0 and 2 → mean 1
    assert byol_loss(p, z).item() == pytest.approx(1.0)


def test_w_s_zero_is_exactly_byol():
    torch.manual_seed(0)
    p, z = torch.randn(8, 16), torch.randn(8, 16)
    local = torch.randn(8, 9, 16)
    t = torch.randn(8, 16)
    assert torch.equal(co_byol_loss(p, z, local, t, 0.0), byol_loss(p, z))


def test_w_s_zero_is_exactly_simclr():
    torch.manual_seed(0)
    a, b = torch.randn(8, 16), torch.randn(8, 16)
    la, lb = torch.randn(8, 4, 16), torch.randn(8, 4, 16)
    assert torch.equal(co_simclr_loss(a, b, la, lb, 0.0, 0.2), nt_xent_loss(a, b, 0.2))


def test_local_term_hand_made_case():
    # one image, two positions: one aligned with the target (cos 1), one orthogonal (cos 0)
    local = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]])
    target = torch.tensor([[5.0, 0.0]])
    assert co_local_loss(local, target).item() == pytest.approx((0.0 + 2.0) / 2)
    total = co_byol_loss(torch.tensor([[1.0, 0.0]]), target, local, target, 0.3)
    assert total.item() == pytest.approx(0.7 * 0.0 + 0.3 * 1.0)


def test_local_gradient_reaches_every_position_and_never_the_target():
    torch.manual_seed(0)
    local = torch.randn(3, 5, 4, requires_grad=True)
    target = torch.randn(3, 4, requires_grad=True)
    co_local_loss(local, target).backward()
    assert target.grad is None
    per_position = local.grad.abs().sum(dim=-1)
    assert (per_position > 0).all()


def test_nt_xent_perfect_pairs_low_loss():
    z = torch.eye(4) * 10
    low = nt_xent_loss(z, z, 0.1).item()
    high = nt_xent_loss(z, z.roll(1, 0), 0.1).item()
    assert low < 0.01 < high


def test_local_info_nce_uniform_when_keys_identical():
    q = torch.randn(4, 3, 8)
    k = torch.ones(4, 8)
    # every key is the same: the softmax is uniform over 4 candidates
    assert co_info_nce_local_loss(q, k, 0.2).item() == pytest.approx(math.log(4), rel=1e-5)
