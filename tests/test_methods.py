import pytest
import torch

from cossl_edge.contract import PreprocessContract
from cossl_edge.training.backbones import ResNetEncoder
from cossl_edge.training.config import PretrainConfig
from cossl_edge.training.methods import METHODS, build_method, resolved_w_s
from cossl_edge.training.optim import ema_tau_at, lr_at


def small(method: str, **kw) -> PretrainConfig:
    return PretrainConfig(method=method, arch="resnet10", width=0.125, proj_hidden=32,
                          proj_dim=16, pred_hidden=32, local_hidden=32,
                          contract=PreprocessContract(size=16), **kw)


def test_registry_has_the_family():
    assert {"co-byol", "byol", "co-simclr", "simclr"} <= set(METHODS)
    assert resolved_w_s(small("co-byol")) == 0.3
    assert resolved_w_s(small("byol")) == 0.0
    with pytest.raises(ValueError, match="base method"):
        resolved_w_s(small("byol", w_s=0.3))


@pytest.mark.parametrize("name", ["co-byol", "byol", "co-simclr", "simclr"])
def test_each_method_trains_one_step(name):
    torch.manual_seed(0)
    m = build_method(small(name))
    x = torch.randn(8, 1, 16, 16)
    loss, _ = m.loss(x, x.flip(-1))
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in m.backbone.parameters()]
    assert all(g is not None for g in grads)


def test_target_network_gets_no_gradient_and_follows_ema():
    torch.manual_seed(0)
    m = build_method(small("co-byol"))
    x = torch.randn(8, 1, 16, 16)
    loss, _ = m.loss(x, x + 0.1)
    loss.backward()
    assert all(p.grad is None for p in m.target_backbone.parameters())
    with torch.no_grad():
        for p in m.backbone.parameters():
            p.add_(1.0)
    online = [p.clone() for p in m.backbone.parameters()]
    before = [p.clone() for p in m.target_backbone.parameters()]
    m.momentum_update(0.9)
    for o, b, t in zip(online, before, m.target_backbone.parameters(), strict=True):
        assert torch.allclose(t, 0.9 * b + 0.1 * o, atol=1e-6)


def test_byol_has_no_local_heads():
    assert not hasattr(build_method(small("byol")), "g2")


def test_local_grid_pooling():
    m = build_method(small("co-byol", local_grid=1))
    x = torch.randn(4, 1, 16, 16)
    assert torch.isfinite(m.loss(x, x)[0])


def test_small_stem_keeps_local_positions_standard_stem_does_not():
    assert ResNetEncoder("resnet10", 0.125, 1, "small").feature_grid(32) == 4
    assert ResNetEncoder("resnet10", 0.125, 1, "standard").feature_grid(32) == 1


def test_feature_grid_probes_on_the_model_device():
    # A GPU run called feature_grid on a CUDA model with a CPU probe and failed at once; the
    # meta device stands in for CUDA here: a probe on any other device raises.
    for stem in ("small", "strided", "standard"):
        enc = ResNetEncoder("resnet10", 0.125, 1, stem).to("meta")
        assert enc.feature_grid(64) == {"small": 8, "strided": 4, "standard": 2}[stem]


def test_auto_stem_keeps_the_first_map_near_32_px():
    from cossl_edge.training.config import stem_for_size

    assert [stem_for_size(s) for s in (24, 32, 48, 64, 96, 128, 224)] == \
        ["small", "small", "small", "strided", "strided", "standard", "standard"]
    for size in (32, 64, 128):
        enc = ResNetEncoder("resnet10", 0.125, 1, stem_for_size(size))
        assert size // (enc.stride // 8) == 32
        assert enc.feature_grid(size) == 4


def test_saved_run_keeps_its_resolved_stem(tmp_path):
    from cossl_edge.contract import PreprocessContract
    from cossl_edge.training.config import PretrainConfig

    cfg = PretrainConfig(contract=PreprocessContract(size=64))
    cfg.save(tmp_path / "config.json", {"stem_resolved": "small"})  # an older rule for "auto"
    saved = PretrainConfig.load(tmp_path / "config.json")
    assert saved.resolved_stem() == "small"
    assert saved.incompatible_with(cfg) == ["stem"]  # resuming would change the weights' shape
    # at 32 px "auto" still means "small": only the input size differs
    assert saved.incompatible_with(PretrainConfig(contract=PreprocessContract(size=32))) \
        == ["contract"]


def test_saved_run_keeps_its_flip(tmp_path):
    import json

    cfg = PretrainConfig(contract=PreprocessContract(size=32))
    cfg.save(tmp_path / "config.json")
    assert PretrainConfig.load(tmp_path / "config.json").resolved_hflip() == 0.0
    assert PretrainConfig.load(tmp_path / "config.json").resolved_rotate() == 15.0
    older = json.loads((tmp_path / "config.json").read_text())
    for key in ("hflip", "solarize", "blur", "rotate"):  # written before these existed
        del older[key]
    (tmp_path / "config.json").write_text(json.dumps(older))
    assert PretrainConfig.load(tmp_path / "config.json").resolved_hflip() == 0.5
    assert PretrainConfig.load(tmp_path / "config.json").resolved_rotate() == 0.0


def test_rf_bounded_variant_runs():
    enc = ResNetEncoder("resnet18", 0.125, 3, "small", rf_bounded_after=2)
    assert enc.forward_features(torch.zeros(2, 3, 32, 32)).shape == (2, 64, 4, 4)
    ks = [m.kernel_size for m in enc.stages[-1].modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(k == (1, 1) for k in ks)


def test_schedules():
    assert lr_at(0.0, 1.0, 0.1) == 0.0
    assert lr_at(0.1, 1.0, 0.1) == pytest.approx(1.0)
    assert lr_at(1.0, 1.0, 0.1) == pytest.approx(0.0)
    assert ema_tau_at(0.0, 0.99) == pytest.approx(0.99)
    assert ema_tau_at(1.0, 0.99) == pytest.approx(1.0)


def test_hflip_default_follows_the_channels():
    gray, colour = PreprocessContract(channels=1, size=32), PreprocessContract(channels=3, size=32)
    assert PretrainConfig(contract=gray).resolved_hflip() == 0.0
    assert PretrainConfig(contract=colour).resolved_hflip() == 0.5
    assert PretrainConfig(contract=gray, hflip=0.5).resolved_hflip() == 0.5
    with pytest.raises(ValueError, match="hflip"):
        PretrainConfig(hflip=1.5).resolved_hflip()


def test_rotation_default_follows_the_channels():
    gray, colour = PreprocessContract(channels=1, size=32), PreprocessContract(channels=3, size=32)
    assert PretrainConfig(contract=gray).resolved_rotate() == 15.0
    assert PretrainConfig(contract=colour).resolved_rotate() == 0.0
    assert PretrainConfig(contract=gray, rotate=0).resolved_rotate() == 0.0
    assert PretrainConfig(contract=colour, rotate=10).resolved_rotate() == 10.0
    with pytest.raises(ValueError, match="rotate"):
        PretrainConfig(rotate=-5).resolved_rotate()


@pytest.mark.parametrize("preset", ["camera", "medical"])
def test_hflip_probability_reaches_the_views(preset):
    import numpy as np

    from cossl_edge.training.views import TwoViews

    img = np.full((32, 32, 1), 0.2, np.float32)
    img[:, :16] = 0.8  # bright left half: a flip moves it to the right
    np.random.seed(0)
    for p, left_brighter in ((0.0, True), (1.0, False)):
        views = TwoViews(preset, PreprocessContract(size=32), min_scale=1.0, hflip=p,
                         solarize=0.0)
        for _ in range(20):
            a, b = views(img)
            for v in (a, b):
                assert (v[0, :, :8].mean() > v[0, :, -8:].mean()) == left_brighter


@pytest.mark.parametrize("preset", ["camera", "medical"])
def test_rotation_reaches_the_views(preset):
    import numpy as np

    from cossl_edge.training.views import TwoViews

    img = np.zeros((32, 32, 1), np.float32)
    img[:, 15:17] = 1.0  # a vertical bar: rotated, its rows' brightest column moves
    np.random.seed(0)

    def off_centre_rows(rotate: float) -> int:
        views = TwoViews(preset, PreprocessContract(size=32), min_scale=1.0, hflip=0.0,
                         solarize=0.0, blur=0.0, rotate=rotate)
        moved = 0
        for _ in range(10):
            for v in views(img):
                cols = v[0].argmax(axis=1)
                moved += int(((cols < 13) | (cols > 18)).sum())
        return moved

    assert off_centre_rows(0.0) == 0
    assert off_centre_rows(45.0) > 20


def test_blur_probability_reaches_the_camera_views():
    import numpy as np

    from cossl_edge.training.views import TwoViews

    img = np.full((32, 32, 1), 0.25, np.float32)
    img[:, 16:] = 0.75  # a sharp vertical edge between columns 15 and 16
    np.random.seed(0)

    def sharpness(blur: float) -> list[float]:
        """Step across the edge over the difference of the two halves: 1 when unblurred.
        Brightness and contrast change both alike."""
        views = TwoViews("camera", PreprocessContract(size=32), min_scale=1.0, hflip=0.0,
                         solarize=0.0, blur=blur)
        out = []
        for _ in range(20):
            a, _ = views(img)
            row = a[0, 16]
            span = row[20:].mean() - row[:12].mean()
            if abs(span) > 1e-3:
                out.append(float((row[16] - row[15]) / span))
        return out

    unblurred = sharpness(0.0)
    assert len(unblurred) > 10 and all(abs(x - 1.0) < 1e-4 for x in unblurred)
    assert min(sharpness(1.0)) < 0.8


def test_w_s_warmup_ramps_the_local_weight_from_zero():
    m = build_method(small("co-byol", w_s=0.3, w_s_warmup=0.2))
    m.set_progress(0.0)
    assert 0 < m.w_s_now < 1e-3  # never exactly 0: the local heads keep a gradient
    m.set_progress(0.1)
    assert m.w_s_now == pytest.approx(0.15)
    m.set_progress(0.5)
    assert m.w_s_now == pytest.approx(0.3)
    plain = build_method(small("co-byol", w_s=0.3))
    plain.set_progress(0.0)
    assert plain.w_s_now == 0.3
    with pytest.raises(ValueError, match="w_s_warmup"):
        build_method(small("co-byol", w_s_warmup=1.5))


def test_predictor_learning_rate_multiple_reaches_the_optimizer():
    from cossl_edge.training.optim import build_optimizer, set_lr
    m = build_method(small("co-byol", pred_lr=10.0))
    opt = build_optimizer("adamw", m, 1e-3, 1e-4)
    predictors = {id(p) for q in (m.q1, m.q2) for p in q.parameters()}
    for g in opt.param_groups:
        in_pred = {id(p) in predictors for p in g["params"]}
        assert len(in_pred) == 1  # a group is all predictor or none
        assert g["lr"] == pytest.approx(1e-2 if in_pred.pop() else 1e-3)
    set_lr(opt, 2e-3)
    assert sorted({round(g["lr"], 6) for g in opt.param_groups}) == [2e-3, 2e-2]
    plain = build_optimizer("adamw", build_method(small("co-byol", pred_lr=1.0)), 1e-3, 1e-4)
    assert {g["lr"] for g in plain.param_groups} == {1e-3}
    assert PretrainConfig().pred_lr == 10.0  # the BYOL family's default


def test_online_local_target_is_the_detached_online_embedding():
    m = build_method(small("co-byol", local_target="online"))
    assert not hasattr(m, "target_g2")
    x = torch.randn(4, 1, 32, 32)
    loss, _ = m.loss(x, x.flip(-1))
    loss.backward()
    assert all(p.grad is not None for q in (m.g2, m.q2) for p in q.parameters())
