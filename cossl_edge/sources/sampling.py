"""How densely a folder is sampled: which DICOM slices and which video frames become
samples. One frozen value, handed whole from the CLI to every :func:`discover` call, so that
pretraining, embedding, few-shot and export calibration see a folder alike."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cossl_edge.sources.refs import SourceError


@dataclass(frozen=True)
class SamplingOptions:
    """``dicom_stride``: every k-th slice/frame of a DICOM series; ``video_every``: every
    k-th video frame; ``video_fps``: or about this many video frames per second (the file's
    own rate bounds it from above). The defaults keep every sample."""

    dicom_stride: int = 1
    video_every: int = 1
    video_fps: float | None = None

    def __post_init__(self) -> None:
        for name, flag in (("dicom_stride", "--dicom-stride"), ("video_every", "--video-every")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SourceError(f"{name} must be a whole number of at least 1 (1 keeps "
                                  f"every sample), got {value!r}; pass {flag} 1 or more")
        fps = self.video_fps
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, int | float)
                                or not math.isfinite(fps) or fps <= 0):
            raise SourceError(f"video_fps must be a positive number of frames per second, "
                              f"got {fps!r}; pass --video-fps 2 for example, or leave it "
                              "out to use --video-every")

    def to_dict(self) -> dict:
        return {"dicom_stride": self.dicom_stride, "video_every": self.video_every,
                "video_fps": self.video_fps}
