"""The training views of a whole batch at once, on tensors: one resample per view for the
rotation, one for the random resized crop and flip, and the colour, blur and solarize steps
as batched tensor operations.

The per-image pipeline (:func:`cossl_edge.training.views.camera_views`: albumentations, one
image at a time) spends most of its time in Python around small OpenCV calls: about 0.6 ms
per pair, 70–80 ms per batch of 128, which is a fifth of a training step of the default
recipe on two cores (``docs/benchmarks.md``). Here the same random draws are made for the
whole batch with numpy and applied with a few torch operations on B×C×H×W tensors.

The views are what albumentations makes, transform by transform (``tests/test_batch_views.py``
compares each step's pixels with albumentations' functions for the same parameters, and the
views' distributions with the per-image pipeline's):

- **rotation** (``rotate`` > 0): uniform in ±``rotate`` degrees about the centre, bilinear,
  black corners (or mirrored ones, reflect-101, for a patch of a larger image) — as
  :func:`cossl_edge.training.views.rotate`;
- **random resized crop**: albumentations' ``RandomResizedCrop`` draw (area in
  [``min_scale``, 1] of the image, log-uniform aspect ratio in [3/4, 4/3], ten tries, then
  the centre crop), an integer box resized bilinearly (half-pixel centres, edges clamped:
  OpenCV's ``INTER_LINEAR``);
- **horizontal flip** with probability ``hflip``;
- **colour** with probability 0.8: for one channel ``RandomBrightnessContrast``
  (x·(1+c) + b, c and b uniform in ±``jitter``, clipped); for colour ``ColorJitter``
  (brightness and contrast in [1 − ``jitter``, 1 + ``jitter``], saturation 0.8–1.2, hue
  ±0.1, in a random order per image) and then ``ToGray`` with probability 0.2;
- **Gaussian blur**: the fixed odd kernel of about 10% of the side, σ uniform in 0.1–2,
  reflect-101 borders (view 1 always with the default ``blur``, view 2 with a tenth of it);
- **solarize** (view 2, probability ``solarize``): x ≥ 0.5 → 1 − x.

The medical views (:func:`cossl_edge.training.views.medical_views`) share the geometry and
replace the colour steps with MONAI's intensity transforms, here batched with the same
formulas (``tests/test_batch_views.py`` compares them with MONAI's own transforms for the
same parameters): ``AdjustContrast`` (gamma 0.7–1.5, p 0.8), ``HistogramShift`` (5–10
control points, p 0.3), ``RandBiasField`` (degree 3, p 0.3), ``GaussianSmooth`` (σ 0.25–1
per axis, MONAI's erf kernel and zero padding) and Gaussian noise (σ up to 0.05).

The local-finding steps of the camera views (``training/local_augment.py``) are batched
too: texture scrambling (the image less its Gaussian low-pass at σ = side / 8, plus a new
smooth shading and grain from white noise, OpenCV's kernels and reflect-101 borders) and
the CutPaste hard negative (a square or a thin scar of the view moved, its contrast
changed), with the draws of the per-image functions.

The random draws come from one numpy Generator per process, seeded by
:meth:`cossl_edge.training.views.TwoViews.reseed`; they differ from the per-image
pipeline's streams (the same distributions, not the same samples).

The package, by what it batches (each module ≤ 350 lines, each step a function of a batch
and its draws):

- :mod:`.geometry` — the crop boxes, rotation, resized crop and flip;
- :mod:`.filters` — separable filtering and the Gaussian kernels the other steps share;
- :mod:`.camera` — a camera view's draws, colour, blur and solarize;
- :mod:`.medical` — the medical views' MONAI intensity steps;
- :mod:`.findings` — texture scrambling and CutPaste (the local-finding steps);
- :mod:`.pairs` — a batch's two views (and hard negative) in the order the loop takes them.

The per-image pipelines of :mod:`cossl_edge.training.views` are the reference: every step
here is tested against them.
"""

from cossl_edge.training.batch_views.camera import (
    GRAY,
    ViewParams,
    apply_view,
    blur,
    colour,
    draw,
    solarize,
)
from cossl_edge.training.batch_views.filters import (
    band_matrices,
    cv2_gaussian_kernel,
    gaussian_kernels,
    monai_gaussian_kernels,
    reflect101,
    separable_filter,
)
from cossl_edge.training.batch_views.findings import (
    CutParams,
    TextureParams,
    cut_paste,
    draw_cut,
    draw_texture,
    scramble_texture,
)
from cossl_edge.training.batch_views.geometry import (
    RATIO,
    crop_boxes,
    crop_resize_flip,
    geometry,
    rotate_batch,
)
from cossl_edge.training.batch_views.medical import (
    BIAS_DEGREE,
    HIST_POINTS,
    MedicalParams,
    adjust_contrast,
    bias_field,
    draw_medical,
    gaussian_smooth,
    histogram_shift,
    medical_intensity,
)
from cossl_edge.training.batch_views.pairs import batch_pairs

__all__ = [
    "BIAS_DEGREE", "GRAY", "HIST_POINTS", "RATIO", "CutParams", "MedicalParams",
    "TextureParams", "ViewParams", "adjust_contrast", "apply_view", "band_matrices",
    "batch_pairs", "bias_field", "blur", "colour", "crop_boxes", "crop_resize_flip",
    "cut_paste", "cv2_gaussian_kernel", "draw", "draw_cut", "draw_medical", "draw_texture",
    "gaussian_kernels", "gaussian_smooth", "geometry", "histogram_shift",
    "medical_intensity", "monai_gaussian_kernels", "reflect101", "rotate_batch",
    "scramble_texture", "separable_filter", "solarize",
]
