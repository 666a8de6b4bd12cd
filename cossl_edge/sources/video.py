"""Video files: one sample per kept frame (``video_every`` / ``video_fps``), read through
OpenCV with :mod:`cossl_edge.sources.video_decode` (imported by OpenCV only when a video is met)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cossl_edge.contract import PreprocessContract
from cossl_edge.sources.reader import Reader
from cossl_edge.sources.refs import SampleRef
from cossl_edge.sources.sampling import SamplingOptions
from cossl_edge.sources.video_decode import (
    VIDEO_SUFFIXES,
    VideoReadError,
    frame_indices,
    iter_video_frames,
    read_video_frame,
)


def matches(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def list_file(path: Path, key: str, sampling: SamplingOptions) -> list[SampleRef]:
    frames = frame_indices(path, sampling.video_every, sampling.video_fps)
    return [SampleRef(path, "video", i, f"{key}#{i}") for i in frames]


def read(ref: SampleRef, contract: PreprocessContract | None = None) -> np.ndarray:
    return read_video_frame(ref.path, ref.frame or 0)


def native_side(ref: SampleRef) -> int | None:
    import cv2

    cap = cv2.VideoCapture(str(ref.path))
    w, h = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
    cap.release()
    return int(min(w, h)) if w and h else None


READER = Reader(kind="video", label="video", matches=matches, list_file=list_file,
                read=read, native_side=native_side, skip_errors=(VideoReadError,),
                read_frames=iter_video_frames)
