"""The training views of volume runs (``pretrain --volumes``), a batch at a time on torch
tensors, as the 2D medical views (:mod:`~cossl_edge.training.batch_views`) do for images.

Each view of a cached volume (float16 D×H×W in [0, 1], resampled to isotropic spacing):

- **random 3D crop**: a box of at least ``min_scale`` of the volume's voxels (the fraction
  uniform in [``min_scale``, 1]), near-cubic in millimetres (each side's log-aspect uniform
  in ±log 4/3; a box deeper than the volume keeps its whole depth and widens in-plane to
  keep the fraction), ten tries, then the whole volume; sides rounded up, so a crop never
  holds less than ``min_scale``;
- resized to a ``size``³ cube with a **small in-plane rotation** (uniform in ±``rotate``°
  about the slice normal, zeros outside) and **flips of the in-plane axes** (rows and
  columns, each with probability ``flip``), all one trilinear resample
  (``grid_sample``);
- **intensity** as the medical preset in 2D: gamma contrast (0.7–1.5, p 0.8), Gaussian
  smoothing (σ 0.25–1 voxel along each axis, p 0.5·``blur`` for view 1 and 0.1·``blur``
  for view 2, zero borders as MONAI's ``GaussianSmooth``), Gaussian noise (σ 0.05, p 0.1
  for view 1 and 0.5 for view 2), clipped to [0, 1]; then the contract's mean and std.

Volumes are not resized to a common shape in memory: each is cropped where it lies, so a
batch mixes series of any size. The draws come from one numpy Generator per process
(:meth:`VolumeViews.reseed`, seeded by the loop as the 2D views are).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

ASPECT = (3 / 4, 4 / 3)
TRIES = 10
GAMMA = (0.7, 1.5)
SMOOTH_SIGMA = (0.25, 1.0)
NOISE_STD = 0.05


@dataclass(frozen=True)
class VolumeViewSettings:
    size: int = 64  # side of the cube a view is resized to
    min_scale: float = 0.2  # least fraction of the volume's voxels a crop holds
    flip: float = 0.5  # probability of flipping each in-plane axis
    rotate: float = 15.0  # largest in-plane rotation, degrees
    blur: float = 1.0  # scales the smoothing probabilities (0.5 and 0.1)
    mean: float = 0.5
    std: float = 0.25


def crop_box(shape: tuple[int, int, int], min_scale: float, rng: np.random.Generator
             ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(start, size) of one random crop of a D×H×W volume (see the module's text)."""
    if not 0 < min_scale <= 1:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
    dims = np.asarray(shape, np.int64)
    total = float(dims.prod())
    for _ in range(TRIES):
        frac = rng.uniform(min_scale, 1.0)
        aspect = np.exp(rng.uniform(math.log(ASPECT[0]), math.log(ASPECT[1]), 3))
        aspect /= np.cbrt(aspect.prod())
        side = np.cbrt(frac * total) * aspect
        d = min(float(dims[0]), side[0])
        area = frac * total / d  # the in-plane area that keeps the fraction
        h = math.sqrt(area * aspect[1] / aspect[2])
        sides = np.array([math.ceil(d - 1e-9), math.ceil(h - 1e-9),
                          math.ceil(area / h - 1e-9)], np.int64)
        sides = np.maximum(sides, 1)
        if np.all(sides <= dims):
            starts = [int(rng.integers(0, n - s + 1)) for n, s in zip(dims, sides, strict=True)]
            return tuple(starts), tuple(int(s) for s in sides)  # type: ignore[return-value]
    return (0, 0, 0), tuple(int(n) for n in dims)  # type: ignore[return-value]


@dataclass
class Geometry:
    """One view's draws for B volumes: crop boxes, angles (radians), flips (±1)."""

    starts: list[tuple[int, int, int]]
    sizes: list[tuple[int, int, int]]
    angle: np.ndarray
    flip_rows: np.ndarray
    flip_cols: np.ndarray


def draw_geometry(shapes: list[tuple[int, int, int]], s: VolumeViewSettings,
                  rng: np.random.Generator) -> Geometry:
    boxes = [crop_box(shape, s.min_scale, rng) for shape in shapes]
    b = len(shapes)
    angle = np.deg2rad(rng.uniform(-s.rotate, s.rotate, b)) if s.rotate > 0 else np.zeros(b)
    flips = np.where(rng.random((2, b)) < s.flip, -1.0, 1.0)
    return Geometry([bx[0] for bx in boxes], [bx[1] for bx in boxes], angle, flips[0],
                    flips[1])


def warp(crop: torch.Tensor, size: int, angle: float, flip_rows: float,
         flip_cols: float) -> torch.Tensor:
    """A d×h×w crop → size³, rotated in-plane by ``angle`` and flipped (one resample)."""
    c, s = math.cos(angle), math.sin(angle)
    # affine_grid's coordinates are (x: columns, y: rows, z: slices)
    theta = torch.tensor([[[c * flip_cols, -s * flip_rows, 0.0, 0.0],
                           [s * flip_cols, c * flip_rows, 0.0, 0.0],
                           [0.0, 0.0, 1.0, 0.0]]], dtype=torch.float32)
    grid = F.affine_grid(theta, [1, 1, size, size, size], align_corners=False)
    return F.grid_sample(crop[None, None], grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[0]


def crops(volumes: list[np.ndarray], g: Geometry, size: int) -> torch.Tensor:
    """The B views' geometry: B×1×size³ float32."""
    out = []
    for vol, (z, y, x), (d, h, w), a, fr, fc in zip(volumes, g.starts, g.sizes, g.angle,
                                                     g.flip_rows, g.flip_cols, strict=True):
        box = torch.from_numpy(np.ascontiguousarray(vol[z:z + d, y:y + h, x:x + w],
                                                    dtype=np.float32))
        out.append(warp(box, size, float(a), float(fr), float(fc)))
    return torch.stack(out)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def smooth(x: torch.Tensor, sigmas: np.ndarray) -> torch.Tensor:
    """1×d×h×w view, Gaussian σ per axis (3,), separable, zero borders."""
    y = x[None]
    for axis, sigma in enumerate(sigmas):
        k = gaussian_kernel(float(sigma))
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = len(k)
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = len(k) // 2
        y = F.conv3d(F.pad(y, pad), k.reshape(shape))
    return y[0]


def intensity(x: torch.Tensor, s: VolumeViewSettings, smooth_p: float, noise_p: float,
              rng: np.random.Generator) -> torch.Tensor:
    """Gamma, smoothing and noise where each view's draw says, in place of B×1×S³ views."""
    b = len(x)
    gamma_on = rng.random(b) < 0.8
    gamma = rng.uniform(*GAMMA, b)
    smooth_on = rng.random(b) < smooth_p
    sigmas = rng.uniform(*SMOOTH_SIGMA, (b, 3))
    noise_on = rng.random(b) < noise_p
    noise_seed = int(rng.integers(0, 2**62))
    for i in range(b):
        if gamma_on[i]:
            x[i] = x[i].clamp(0, 1).pow(float(gamma[i]))
        if smooth_on[i]:
            x[i] = smooth(x[i], sigmas[i])
    if noise_on.any():
        gen = torch.Generator().manual_seed(noise_seed)
        noise = torch.randn(x.shape, generator=gen) * NOISE_STD
        x = x + noise * torch.from_numpy(noise_on.astype(np.float32)).reshape(b, 1, 1, 1, 1)
    return x.clamp_(0, 1)


def normalize(x: torch.Tensor, s: VolumeViewSettings) -> torch.Tensor:
    return (x - s.mean) / s.std


def normalize_cubes(cubes: np.ndarray, mean: float, std: float) -> np.ndarray:
    """N×S×S×S cubes in [0, 1] → float32 N×1×S×S×S, as the encoder reads them."""
    return ((np.asarray(cubes, np.float32) - mean) / std)[:, None]


def whole_cube(volume: np.ndarray, size: int) -> np.ndarray:
    """The whole volume resized to size³ (trilinear): the view of a series at inference,
    which the diagnostics and the calibration file use."""
    t = torch.from_numpy(np.ascontiguousarray(volume, np.float32))[None, None]
    return F.interpolate(t, size=(size,) * 3, mode="trilinear", align_corners=False)[0, 0] \
        .numpy()


class VolumeViews:
    """Two views of each volume of a batch (``batch``), drawn from this process's stream."""

    def __init__(self, settings: VolumeViewSettings, seed: int = 0):
        self.settings = settings
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def view(self, volumes: list[np.ndarray], smooth_p: float, noise_p: float
             ) -> torch.Tensor:
        s = self.settings
        g = draw_geometry([v.shape for v in volumes], s, self.rng)
        x = intensity(crops(volumes, g, s.size), s, smooth_p, noise_p, self.rng)
        return normalize(x, s)

    def batch(self, volumes, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """B×1×S×S×S view pairs of ``volumes[i]`` for i in ``indices``."""
        chosen = [volumes[int(i)] for i in indices]
        b = self.settings.blur
        return self.view(chosen, 0.5 * b, 0.1), self.view(chosen, 0.1 * b, 0.5)
