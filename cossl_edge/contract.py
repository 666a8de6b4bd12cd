"""The preprocessing contract: how an image must be fed to an encoder.

One small serialisable object. Training records it in the run directory, export writes it
into the ONNX file's ``metadata_props``, and the edge runtime applies it with this same numpy
code, so a model is never fed differently at the edge than it was trained.

The deterministic path is ``decode → [0, 1] float → prepare() → normalize()``:

>>> import numpy as np
>>> c = PreprocessContract(channels=1, size=32, mean=(0.5,), std=(0.25,))
>>> x = c.apply(np.random.default_rng(0).random((50, 40)))
>>> x.shape, x.dtype
((1, 32, 32), dtype('float32'))

Training caches the output of :meth:`prepare` and draws its random views from it; inference
calls :meth:`apply` (``normalize(prepare(image))``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

CONTRACT_VERSION = 1
RESIZE_MODES = ("resize", "pad", "center-crop")
DICOM_WINDOWS = ("header", "auto", "lung", "mediastinum", "brain", "bone", "abdomen")


class ContractError(ValueError):
    """An image or a contract that cannot be used together."""


@dataclass(frozen=True)
class PreprocessContract:
    """What the encoder expects.

    channels: 1 (grayscale) or 3 (RGB). Colour images are converted to luminance for 1
        channel; grayscale images are repeated for 3.
    size: side of the square input, in pixels.
    resize: ``resize`` (stretch to size×size), ``pad`` (keep aspect, pad with zeros, i.e. the
        darkest value), or ``center-crop`` (keep aspect, crop the long side).
    window: DICOM intensity rule: ``header`` (WindowCenter/Width from the file, percentiles
        when absent), ``auto`` (0.5th–99.5th percentiles), or a named CT preset.
    mean, std: per-channel normalisation applied after ``prepare``.
    """

    channels: int = 1
    size: int = 64
    resize: str = "resize"
    window: str = "header"
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    version: int = field(default=CONTRACT_VERSION)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ContractError(f"channels must be 1 or 3, got {self.channels}")
        if self.size < 8:
            raise ContractError(f"size must be at least 8 pixels, got {self.size}")
        if self.resize not in RESIZE_MODES:
            raise ContractError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.window not in DICOM_WINDOWS:
            raise ContractError(f"window must be one of {DICOM_WINDOWS}, got {self.window!r}")
        object.__setattr__(self, "mean", _per_channel(self.mean, self.channels, "mean"))
        object.__setattr__(self, "std", _per_channel(self.std, self.channels, "std"))
        if min(self.std) <= 0:
            raise ContractError("std must be positive")

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessContract:
        known = {"channels", "size", "resize", "window", "mean", "std", "version"}
        unknown = set(d) - known
        if unknown:
            raise ContractError(f"unknown contract fields: {sorted(unknown)}")
        if int(d.get("version", CONTRACT_VERSION)) > CONTRACT_VERSION:
            raise ContractError(
                f"contract version {d['version']} is newer than this cossl-edge understands "
                f"({CONTRACT_VERSION}); upgrade cossl-edge"
            )
        d = dict(d)
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(float(v) for v in d[k])
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> PreprocessContract:
        try:
            return cls.from_dict(json.loads(text))
        except (json.JSONDecodeError, TypeError) as e:
            raise ContractError(f"not a valid contract: {e}") from e

    # -- the deterministic path ------------------------------------------------------------
    def prepare(self, image: np.ndarray) -> np.ndarray:
        """[0, 1] image (H×W, H×W×1, H×W×3 or H×W×4) → float32 size×size×channels in [0, 1]."""
        img = to_channels(check_image(image), self.channels)
        return resize_image(img, self.size, self.resize)

    def normalize(self, prepared: np.ndarray) -> np.ndarray:
        """size×size×C in [0, 1] (or a batch N×size×size×C) → float32 C×size×size (N×C×…)."""
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        x = (np.asarray(prepared, np.float32) - mean) / std
        return np.ascontiguousarray(np.moveaxis(x, -1, -3))

    def apply(self, image: np.ndarray) -> np.ndarray:
        return self.normalize(self.prepare(image))


def _per_channel(values, channels: int, name: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) == 1 and channels == 3:
        values = values * 3
    if len(values) != channels:
        raise ContractError(f"{name} needs {channels} values, got {len(values)}")
    return values


def check_image(image: np.ndarray) -> np.ndarray:
    """Refuse what cannot be an image: wrong rank, empty, NaN or inf."""
    a = np.asarray(image)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise ContractError(f"expected an H×W or H×W×C image (C = 1, 3, 4), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ContractError("empty image")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ContractError("image holds NaN or infinite values")
    return a


def to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """H×W[×C] float → H×W×channels float (ITU-R BT.601 luminance for colour → gray)."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 4:  # drop alpha
        img = img[:, :, :3]
    if img.shape[2] == channels:
        return img
    if channels == 1:
        w = np.asarray([0.299, 0.587, 0.114], np.float32)
        return (img @ w)[:, :, None].astype(np.float32)
    return np.repeat(img, 3, axis=2)


def resize_image(img: np.ndarray, size: int, mode: str) -> np.ndarray:
    """H×W×C float → size×size×C float32, bilinear with antialiasing (Pillow)."""
    h, w = img.shape[:2]
    if mode == "center-crop" and h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        img, h, w = img[top : top + s, left : left + s], s, s
    if mode == "pad" and h != w:
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        inner = resize_hw(img, nh, nw)
        out = np.zeros((size, size, img.shape[2]), np.float32)
        top, left = (size - nh) // 2, (size - nw) // 2
        out[top : top + nh, left : left + nw] = inner
        return out
    return resize_hw(img, size, size)


def resize_hw(img: np.ndarray, nh: int, nw: int) -> np.ndarray:
    """An H×W×C float image bilinearly resized to nh × nw (Pillow, per channel), as the
    contract resizes: training, the edge and the node's pictures share it."""
    if img.shape[:2] == (nh, nw):
        return np.ascontiguousarray(img, dtype=np.float32)
    chans = [
        np.asarray(Image.fromarray(np.ascontiguousarray(img[:, :, c], np.float32))
                   .resize((nw, nh), Image.Resampling.BILINEAR))
        for c in range(img.shape[2])
    ]
    return np.stack(chans, axis=2).astype(np.float32)


VOLUME_CONTRACT_VERSION = 1
CUBE_RULES = ("resize-whole",)


@dataclass(frozen=True)
class VolumeContract:
    """How a volume (a CT/MR series, :mod:`cossl_edge.volumes`) becomes the input of a 3D
    encoder: the ONNX file of a ``pretrain --volumes`` run carries it beside its
    :class:`PreprocessContract` (whose ``window``, ``mean`` and ``std`` apply voxel-wise and
    whose ``size`` is the cube's side). 2D files carry none.

    spacing_mm: isotropic voxel spacing the volume is resampled to first (linear, per axis,
        :func:`cossl_edge.volumes.resample`).
    size: side S of the S×S×S input cube.
    cube: ``resize-whole``: the whole resampled volume resized to S³ by trilinear
        interpolation (torch ``interpolate``, ``align_corners=False``, no antialiasing),
        no crop and no pad, so the aspect is not kept (training's ``whole_cube``).
    orientation: ``source``: the volume's own axes (slices ordered along the slice
        normal, then rows, columns), not reoriented.
    min_depth: fewer slices than this after resampling is not a volume (skipped).
    """

    spacing_mm: float = 2.0
    size: int = 64
    cube: str = "resize-whole"
    interpolation: str = "trilinear"
    orientation: str = "source"
    min_depth: int = 8
    dim: int = 3
    version: int = field(default=VOLUME_CONTRACT_VERSION)

    def __post_init__(self) -> None:
        if not self.spacing_mm > 0:
            raise ContractError(f"spacing_mm must be positive, got {self.spacing_mm}")
        if self.size < 8:
            raise ContractError(f"size must be at least 8 voxels, got {self.size}")
        if self.cube not in CUBE_RULES:
            raise ContractError(f"cube must be one of {CUBE_RULES}, got {self.cube!r}")
        if self.dim != 3:
            raise ContractError(f"a volume contract is 3D, got dim {self.dim}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> VolumeContract:
        try:
            d = json.loads(text)
            if int(d.get("version", VOLUME_CONTRACT_VERSION)) > VOLUME_CONTRACT_VERSION:
                raise ContractError(f"volume contract version {d['version']} is newer than "
                                    "this cossl-edge understands; upgrade cossl-edge")
            unknown = set(d) - set(cls.__dataclass_fields__)
            if unknown:
                raise ContractError(f"unknown volume contract fields: {sorted(unknown)}")
            return cls(**d)
        except (json.JSONDecodeError, TypeError, AttributeError) as e:
            raise ContractError(f"not a valid volume contract: {e}") from e
