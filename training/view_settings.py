"""The settings of the two training views, travelling together (torch- and
albumentations-free, so the configuration can build them anywhere)."""

from __future__ import annotations

from dataclasses import dataclass

PRESETS = ("camera", "medical")


@dataclass(frozen=True)
class ViewSettings:
    """What :class:`~cossl_edge.training.views.TwoViews` draws: the preset (``camera`` or
    ``medical``), the crop scale, flip/solarize/blur probabilities, the rotation range
    (degrees), the view side (None: the image's), texture scrambling, CutPaste negatives
    and the brightness/contrast jitter. ``PretrainConfig.view_settings`` resolves them for a
    run."""

    preset: str = "camera"
    min_scale: float = 0.2
    hflip: float = 0.5
    solarize: float = 0.2
    blur: float = 1.0
    rotate: float = 0.0
    view_size: int | None = None
    texture: float = 0.0
    cutpaste: bool = False
    jitter: float = 0.4

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {self.preset!r}")
