"""BatchNorm statistics estimated again on clean images once training ends."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from cossl_edge import rundir
from cossl_edge.contract import PreprocessContract
from cossl_edge.training.backbones import ResNetEncoder
from cossl_edge.training.bn_recalibration import recalibrate, trained_batchnorms
from cossl_edge.training.loop import pretrain


def _skewed_encoder() -> ResNetEncoder:
    torch.manual_seed(0)
    enc = ResNetEncoder("resnet10", width=0.25, in_channels=1, stem="small")
    for m in enc.modules():  # statistics of another distribution, as augmented views leave
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.fill_(3.0)
            m.running_var.fill_(9.0)
    return enc


def test_statistics_are_those_of_the_clean_images():
    contract = PreprocessContract(size=32)
    images = np.random.default_rng(1).random((20, 32, 32, 1)).astype(np.float32)
    enc = _skewed_encoder()
    frozen = [m for m in enc.modules() if isinstance(m, nn.BatchNorm2d)][-1]
    frozen.weight.requires_grad_(False)
    frozen.bias.requires_grad_(False)
    frozen_before = frozen.running_mean.clone()
    reference = copy.deepcopy(enc)
    enc.train()
    assert recalibrate(enc, images, contract, torch.device("cpu")) == 20
    assert enc.training  # the caller's mode is kept
    # the reference: every trained BatchNorm reset and fed the 20 images as one batch
    layers = trained_batchnorms(reference)
    assert frozen not in layers and len(layers) > 5
    for m in layers:
        m.reset_running_stats()
        m.momentum = 1.0
    reference.eval()
    for m in layers:
        m.train()
    with torch.no_grad():
        reference.forward_features(torch.from_numpy(contract.normalize(images)))
    for (name, a), b in zip(enc.named_buffers(), reference.buffers(), strict=True):
        if "running" in name and not name.startswith(_name_of(enc, frozen)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    assert torch.equal(frozen.running_mean, frozen_before)  # frozen layers keep theirs
    assert all(m.momentum == 0.1 for m in trained_batchnorms(enc))  # restored
    assert float(layers[0].running_var.mean()) != 9.0


def _name_of(model: nn.Module, module: nn.Module) -> str:
    return next(n for n, m in model.named_modules() if m is module)


def test_nothing_to_do_without_trained_batchnorm_or_images():
    enc = _skewed_encoder()
    contract = PreprocessContract(size=32)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    assert recalibrate(enc, np.zeros((0, 32, 32, 1), np.float32), contract,
                       torch.device("cpu")) == 0
    for p in enc.parameters():
        p.requires_grad_(False)
    assert recalibrate(enc, np.ones((4, 32, 32, 1), np.float32), contract,
                       torch.device("cpu")) == 0
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())


def test_pretrain_writes_the_recalibrated_encoder(shapes_dir, tmp_path):
    """encoder.pt: the trained weights of last.pt, BatchNorm statistics from clean images;
    --keep-bn-stats writes them as training left them."""
    from cossl_edge.training.config import PretrainConfig

    def run(name: str, recal: bool) -> tuple[dict, dict]:
        cfg = PretrainConfig(arch="resnet10", width=0.25, proj_hidden=64, pred_hidden=64,
                             local_hidden=32, batch_size=32, epochs=1, recalibrate_bn=recal,
                             contract=PreprocessContract(size=32))
        out = tmp_path / name
        pretrain(cfg, shapes_dir, out, progress=False)
        enc = torch.load(out / rundir.ENCODER, weights_only=True)
        last = torch.load(out / rundir.LAST_CHECKPOINT, weights_only=True)["model"]
        trained = {k[len("backbone."):]: v for k, v in last.items()
                   if k.startswith("backbone.")}
        return enc, trained

    enc, trained = run("recal", True)
    assert enc.keys() == trained.keys()
    stats = [k for k in enc if k.endswith("running_mean")]
    weights = [k for k in enc if k.endswith("weight")]
    assert all(torch.equal(enc[k], trained[k]) for k in weights)
    assert sum(not torch.allclose(enc[k], trained[k]) for k in stats) == len(stats)
    enc, trained = run("kept", False)
    assert all(torch.equal(enc[k], trained[k]) for k in enc)
