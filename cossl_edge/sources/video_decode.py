"""Video files as camera frames, through OpenCV (imported only when a video is read, so the
edge runtime installs without it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv"})
SEEK_AFTER = 48  # frames; below this, grabbing forward is faster than a seek
OPENCV_HINT = "pip install opencv-python-headless (or 'cossl-edge[train]')"


class VideoReadError(ValueError):
    """A video that cannot be read; the message says why and what to do."""


def _cv2():
    try:
        import cv2
    except ImportError as e:
        raise VideoReadError(f"reading video needs OpenCV: {OPENCV_HINT}") from e
    return cv2


def frame_indices(path: str | Path, every: int = 1, fps: float | None = None) -> list[int]:
    """Indices of the frames to sample: every ``every``-th frame, or about ``fps`` frames per
    second of video when ``fps`` is given (the file's own rate bounds it from above)."""
    if every < 1:
        raise VideoReadError(f"every must be at least 1, got {every}")
    if fps is not None and fps <= 0:
        raise VideoReadError(f"fps must be positive, got {fps}")
    count, native_fps = _probe(Path(path))
    if fps is not None and native_fps > 0:
        step = native_fps / fps
        idx = sorted({int(round(i * step)) for i in range(int(count / step) + 1)})
        return [i for i in idx if i < count]
    return list(range(0, count, every))


def _probe(path: Path) -> tuple[int, float]:
    cv2 = _cv2()
    if path.stat().st_size == 0:
        raise VideoReadError("empty file (0 bytes)")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoReadError("not a readable video (OpenCV could not open it)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if count <= 0:  # some containers do not record it: count by grabbing
            while cap.grab():
                count += 1
    finally:
        cap.release()
    if count <= 0:
        raise VideoReadError("video holds no frames")
    return count, fps


def read_video_frame(path: str | Path, index: int) -> np.ndarray:
    """Frame ``index`` as float32 H×W×3 RGB in [0, 1]."""
    for _, frame in iter_video_frames(path, [index]):
        return frame
    raise VideoReadError(f"frame {index} could not be read")


def iter_video_frames(path: str | Path, indices: list[int]
                      ) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB float32 frame) in one forward pass, one frame in memory at a time.
    Nearby frames are reached by grabbing forward; distant ones by a seek, so reading one
    late frame of a long video does not decode everything before it."""
    cv2 = _cv2()
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoReadError("not a readable video (OpenCV could not open it)")
        i = 0
        for target in sorted(set(indices)):
            if target - i > SEEK_AFTER:  # far ahead: let the demuxer jump (keyframe + decode)
                cap.set(cv2.CAP_PROP_POS_FRAMES, target)
                i = target
            while i < target and cap.grab():
                i += 1
            ok, bgr = cap.read() if i == target else (False, None)
            if not ok:
                raise VideoReadError(f"frame {target} could not be read (the video ends "
                                     "earlier or is damaged)")
            i += 1
            yield target, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    finally:
        cap.release()
