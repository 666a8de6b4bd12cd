"""The resolved pretraining configuration: every setting of a run, saved as ``config.json``.

Every default of the method (``shared/METHOD.md``) is a field here, not a constant in code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from cossl_edge.contract import PreprocessContract
from cossl_edge.runtime.pooling import POOLS
from cossl_edge.training.method_list import DEFAULT_METHOD, all_options, method_info
from cossl_edge.training.view_settings import ViewSettings

CONFIG_VERSION = 1


def size_for_native(side: int | None, findings: str = "global") -> int:
    """``--image-size auto``: the recipe size (32, 64 or 128 px) nearest to the data's median
    short side; 64 when it cannot be read. Larger images are downsampled to 128 px, which a
    CPU can train on; pass --image-size for more. With ``--findings local`` the images keep
    up to 256 px (a multiple of 32): a thin crack must survive the resize, and training on
    native-resolution patches costs the same at any image size."""
    if findings == "local" and side is not None and side > 90:
        return min(LOCAL_MAX_SIZE, max(128, side // 32 * 32))
    if side is None:
        return 64
    return 32 if side <= 45 else 64 if side <= 90 else 128


LOCAL_MAX_SIZE = 256
ARCHS = ("auto", "resnet10", "resnet18", "efficientnet-lite0")
# --arch auto: images whose detail side (sources.detail_side: the side they shrink to keeping
# 99% of their variance) is at least this start from ImageNet. Measured: sklearn's digits
# (8x8 drawn at 32 px) 10, where scratch won by 3.4 points; MNIST-5k 24, where ImageNet won
# by 1.2; the radiograph phantoms 72 and the real EL cells 74, where ImageNet won by 0.9-10
# points (docs/recipe.md, "Scratch or ImageNet weights").
PRETRAINED_MIN_DETAIL = 16
PRETRAINED_MIN_SIDE = 200  # images at least this large start at the weights' input size
PRETRAINED_SIZE = 224
# --arch efficientnet-lite0 on smaller images, --image-size auto: 112 px (digits: ImageNet
# features 71.9% 5-shot at 112 against 68.0% at 224; MNIST-5k equal; a step costs a quarter)
PRETRAINED_SMALL_SIZE = 112


def resolve_arch(config: PretrainConfig, side: int | None, auto_size: bool,
                 weights: bool, detail: float | None = None) -> PretrainConfig:
    """``--arch auto``: EfficientNet-Lite0 from ImageNet weights for images with detail
    (their ``detail`` side, :func:`cossl_edge.sources.detail_side`, at least
    ``PRETRAINED_MIN_DETAIL`` px) when the weights are installed and ``--findings`` is
    global; the CPU recipe (ResNet-10 ×0.25) from scratch otherwise: on images with little
    detail (small images drawn large) ImageNet's features have little to read and scratch
    makes ten times the steps. When the detail cannot be measured, the size decides
    (``PRETRAINED_MIN_SIDE``); an explicit ``--image-size`` below ``PRETRAINED_SMALL_SIZE``
    keeps the scratch recipe. The input size with ``--image-size auto``: 224 px (the
    weights' own) for images of at least ``PRETRAINED_MIN_SIDE`` px, 112 below. A
    pretrained EfficientNet-Lite0 reads its input as the ImageNet weights expect (mean and
    std of the contract)."""
    arch = config.arch
    if arch == "auto":
        if detail is not None:
            rich = detail >= PRETRAINED_MIN_DETAIL
        elif auto_size:
            rich = side is not None and side >= PRETRAINED_MIN_SIDE
        else:
            rich = config.contract.size >= 128
        if not auto_size and config.contract.size < PRETRAINED_SMALL_SIZE:
            rich = False  # an --image-size below what the ImageNet start was measured at
        arch = "efficientnet-lite0" if rich and weights and config.findings == "global" \
            else "resnet10"
    if arch not in ARCHS[1:]:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    config = replace(config, arch=arch)
    if arch == "efficientnet-lite0":
        from cossl_edge.training.efficientnet import IMAGENET_MEAN, IMAGENET_STD

        c = config.contract.channels
        contract = replace(config.contract, mean=(IMAGENET_MEAN,) * c,
                           std=(IMAGENET_STD,) * c)
        if auto_size and side is not None:
            contract = replace(contract, size=PRETRAINED_SIZE if side >= PRETRAINED_MIN_SIDE
                               else PRETRAINED_SMALL_SIZE)
        config = replace(config, contract=contract)
    return config
FINDINGS = ("global", "local")
# --findings local: the recipe for labels decided by a small local finding (docs/recipe.md,
# "Small local findings"). Each value replaces the field's default only; options given
# explicitly are kept.
LOCAL_FINDINGS_RECIPE = {
    "view_size": 64,  # native-resolution patches: the finding is a large part of a view
    "pool": "gem",  # the embedding follows the strongest positions of the map
    # trained on 4×4 maps, embedded from 16×16: GeM's mean over 16× more positions dilutes a
    # finding 16× more; the maximum does not depend on the map's size (docs/recipe.md)
    "embed_pool": "max",
    "preset": "camera",  # albumentations geometry and intensity, no MONAI smoothing
    "blur": 0.0,  # blur erases thin lines: invariance to it is invariance to the finding
    "solarize": 0.0,
    "min_scale": 0.5,  # crops of a patch stay at about the native scale
    "texture": 0.8,  # the per-image texture stops telling images apart (scramble_texture)
    "jitter": 0.2,  # BYOL's 0.4 saturates scans: a washed-out view has lost its finding
    "cutpaste": True,  # hard negatives: a small local change makes another image
}
CONTRASTIVE = ("co-simclr", "simclr")  # methods with negatives (cutpaste needs them)


def stem_for_size(size: int) -> str:
    """The stem of the per-size recipe: the first feature map stays at about 32×32 or less,
    so a step costs about the same at 32, 64 or 128 px (docs/recipe.md)."""
    if size <= 48:
        return "small"  # 3×3 stride 1: 32 px → 32×32
    if size <= 96:
        return "strided"  # 3×3 stride 2: 64 px → 32×32
    return "standard"  # 7×7 stride 2 + max-pool: 128 px → 32×32

# Settings that change the model's shape or meaning: a resumed run must not change them.
STRUCTURAL = ("method", "arch", "init", "width", "stem", "rf_bounded_after", "pool", "view_size",
              "proj_hidden", "proj_dim", "pred_hidden", "local_hidden", "local_grid",
              "local_target", "contract", "volumes", "spacing")


@dataclass
class PretrainConfig:
    # model
    method: str = DEFAULT_METHOD  # method_list.py; docs/recipe.md
    arch: str = "resnet10"  # resnet10 | resnet18 | efficientnet-lite0 (auto: resolved_arch)
    width: float = 0.25  # ResNets only
    init: str = "imagenet"  # efficientnet-lite0: imagenet | random
    stem: str = "auto"  # auto: by input size (stem_for_size), docs/recipe.md
    rf_bounded_after: int | None = None
    pool: str = "mean"  # global pooling of the map in training: mean | gem | max
    embed_pool: str | None = None  # pooling of the exported embedding; None: as `pool`
    # heads and method settings
    proj_hidden: int = 1024
    proj_dim: int = 128
    pred_hidden: int = 1024
    local_hidden: int = 512
    w_s: float | None = None  # None: the method's default (co-*: 0.3, base methods: 0)
    local_target: str = "g2"  # g2 (target copy of the local projector) | g1 (global head)
    # | online (the online global embedding g1(h) of the other view, stop-gradient)
    w_s_warmup: float = 0.0  # fraction of training over which w_s ramps up from 0
    pred_lr: float = 10.0  # BYOL family: the predictors' learning rate, × --lr (docs/recipe.md)
    # an ImageNet start: its trained (not frozen) blocks' learning rate, × --lr; the heads
    # keep --lr (docs/recipe.md, "Scratch or ImageNet weights")
    backbone_lr: float = 1.0
    # once training ends, the trained BatchNorm layers' statistics estimated again on clean
    # training images (training/bn_recalibration.py; docs/recipe.md, "BatchNorm statistics")
    recalibrate_bn: bool = True
    local_grid: int | None = None  # adaptive-pool the map to n×n before the local term
    temperature: float = 0.2
    ema_base: float = 0.99
    # optimisation
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    batch_size: int = 128
    accumulate: int = 1
    epochs: int | None = None
    time_budget: float | None = None  # seconds
    bf16: bool | None = None  # None: auto, the faster of the two timed at start (precision.py)
    seed: int = 0
    # data
    findings: str = "global"  # global | local: LOCAL_FINDINGS_RECIPE (with_findings_recipe)
    preset: str = "auto"  # camera | medical | auto (medical for DICOM, camera otherwise)
    min_scale: float = 0.2
    texture: float = 0.0  # probability of views.scramble_texture per camera view
    jitter: float = 0.4  # brightness/contrast limit of the camera views (BYOL's 0.4)
    cutpaste: bool = False  # a CutPaste copy of each image as its hard negative (simclr)
    view_size: int | None = None  # side of the training views; None: the contract's size
    hflip: float | None = None  # flip probability per view; None: resolved_hflip()
    solarize: float = 0.2  # probability of solarizing the second camera view
    blur: float = 1.0  # camera views: blur probability of view 1 (view 2: a tenth of it)
    rotate: float | None = None  # rotate each view within ±rotate degrees; None: resolved_rotate()
    workers: int = 0
    dicom_stride: int = 1  # every k-th slice/frame of DICOM volumes and multi-frame objects
    video_every: int = 1  # every k-th video frame ...
    video_fps: float | None = None  # ... or about this many frames per second
    contract: PreprocessContract = field(default_factory=PreprocessContract)
    # volumes (pretrain --volumes): each DICOM series / NIfTI file is one D×H×W volume,
    # resampled to `spacing` mm isotropic; the views are contract.size³ cubes (3D encoder)
    volumes: bool = False
    spacing: float = 2.0
    # a method's settings that are not fields above (method_list.MethodOption), by name
    method_options: dict = field(default_factory=dict)
    # run
    device: str = "auto"
    checkpoint_every: int = 10  # epochs between periodic copies (last.pt is always kept)
    monitor: str | None = None
    version: int = CONFIG_VERSION

    def with_findings_recipe(self, keep: set[str] | frozenset = frozenset()) -> PretrainConfig:
        """This configuration with ``LOCAL_FINDINGS_RECIPE`` in place of its defaults when
        ``findings`` is ``local`` (fields named in ``keep`` — given explicitly — stay as
        they are); unchanged otherwise."""
        if self.findings not in FINDINGS:
            raise ValueError(f"findings must be one of {FINDINGS}, got {self.findings!r}")
        if self.findings != "local":
            return self
        changes = {k: v for k, v in LOCAL_FINDINGS_RECIPE.items() if k not in keep}
        if self.method not in CONTRASTIVE:
            changes.pop("cutpaste", None)
        return replace(self, **changes)

    def option(self, name: str):
        """A method setting: the field of that name, else ``method_options`` (else the
        default its method_list declaration gives)."""
        if name in {f.name for f in fields(self)}:
            return getattr(self, name)
        if name in self.method_options:
            return self.method_options[name]
        declared = all_options().get(name)
        if declared is None:
            raise KeyError(f"no setting {name!r}")
        return declared[0].default

    def check_method_options(self) -> None:
        """``method_options`` holds only settings that this method declares."""
        own = {o.name for o in method_info(self.method).options}
        stray = sorted(set(self.method_options) - own)
        if stray:
            raise ValueError(f"{self.method} has no setting {', '.join(stray)}; its settings: "
                             f"{', '.join(sorted(own)) or 'none'}")

    def resolved_preset(self, kinds: set[str]) -> str:
        """``preset``, or for auto: medical when the data holds DICOM, camera otherwise."""
        if self.preset != "auto":
            return self.preset
        return "medical" if "dicom" in kinds else "camera"

    def view_settings(self, preset: str) -> ViewSettings:
        """The training views' settings, resolved (flip, rotation, view size)."""
        return ViewSettings(preset, self.min_scale, self.resolved_hflip(), self.solarize,
                            self.blur, self.resolved_rotate(), self.resolved_view_size(),
                            self.texture, self.cutpaste, self.jitter)

    def sampling(self):
        """The run's :class:`~cossl_edge.sources.SamplingOptions` (DICOM stride, video
        frames), handed whole to every ``discover()`` of its data."""
        from cossl_edge.sources import SamplingOptions

        return SamplingOptions(dicom_stride=self.dicom_stride, video_every=self.video_every,
                               video_fps=self.video_fps)

    def resolved_embed_pool(self) -> str:
        """Global pooling of the exported embedding: ``embed_pool``, else the training's."""
        pool = self.embed_pool or self.pool
        if pool not in POOLS:
            raise ValueError(f"embed_pool must be one of {POOLS}, got {pool!r}")
        return pool

    def resolved_view_size(self) -> int:
        """Side of the training views. Smaller than the contract's size: each pair of views
        is a native-resolution patch of the prepared image (``TwoViews``), and the fully
        convolutional encoder runs on the whole image at inference."""
        if self.view_size is None:
            return self.contract.size
        if not 8 <= self.view_size <= self.contract.size:
            raise ValueError(f"view_size must be between 8 px and the image size "
                             f"({self.contract.size} px), got {self.view_size}")
        return int(self.view_size)

    def resolved_stem(self) -> str:
        if self.stem != "auto":
            return self.stem
        return stem_for_size(self.resolved_view_size())

    def resolved_hflip(self) -> float:
        """Horizontal-flip probability of each view. Unset: none for one-channel images and
        0.5 for colour. Scans have a canonical left and right (DICOM's patient orientation),
        and digits, characters and many grayscale images are not mirror-symmetric: flip
        invariance then merges classes (no flip: +2.2 points 5-shot on digits, +2.0 on
        MNIST-5k at 2,500 steps, docs/recipe.md). Colour photographs keep the usual mirror
        symmetry."""
        if self.hflip is not None:
            if not 0.0 <= self.hflip <= 1.0:
                raise ValueError(f"hflip must be a probability in [0, 1], got {self.hflip}")
            return float(self.hflip)
        if self.volumes:  # each in-plane axis of a volume's views (training/volume_views.py)
            return 0.5
        return 0.0 if self.contract.channels == 1 else 0.5

    def resolved_rotate(self) -> float:
        """Largest angle (degrees) of the random rotation of each view. Unset: 15° for
        one-channel images, none for colour. Where a left-right flip would be false (scans,
        characters, documents), a small rotation is true: a patient lies a few degrees
        askew, a hand slants its strokes. It took the held-out digits from 90.9% to 92.8%
        5-shot (docs/recipe.md). Colour camera frames keep their horizon: none."""
        if self.rotate is not None:
            if not 0.0 <= self.rotate <= 180.0:
                raise ValueError(f"rotate must be an angle in [0, 180] degrees, got {self.rotate}")
            return float(self.rotate)
        return 15.0 if self.contract.channels == 1 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["contract"] = self.contract.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PretrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown configuration fields: {sorted(unknown)}")
        d = dict(d)
        if isinstance(d.get("contract"), dict):
            d["contract"] = PreprocessContract.from_dict(d["contract"])
        return cls(**d)

    def save(self, path: Path, extra: dict | None = None) -> None:
        payload = self.to_dict() | (extra or {})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> PretrainConfig:
        d = json.loads(Path(path).read_text())
        names = {f.name for f in fields(cls)}
        if d.get("stem") == "auto" and d.get("stem_resolved"):
            d["stem"] = d["stem_resolved"]  # the rule for "auto" may change; the run keeps its stem
        if d.get("bf16") is None and d.get("bf16_resolved") is not None:
            d["bf16"] = d["bf16_resolved"]  # auto was measured when the run started: kept
        d.setdefault("hflip", 0.5)  # runs saved before --hflip auto flipped every view
        d.setdefault("rotate", 0.0)  # ... and did not rotate
        return cls.from_dict({k: v for k, v in d.items() if k in names})

    def incompatible_with(self, other: PretrainConfig) -> list[str]:
        a, b = self.to_dict(), other.to_dict()
        a["stem"], b["stem"] = self.resolved_stem(), other.resolved_stem()
        return [k for k in STRUCTURAL if a.get(k) != b.get(k)]
