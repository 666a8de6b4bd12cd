"""Video files as camera frames: every k-th frame, a target rate, streaming reads, skips."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from cossl_edge.contract import PreprocessContract
from cossl_edge.sources import SamplingOptions, discover, load_many, load_sample
from cossl_edge.sources.video_decode import VideoReadError, frame_indices, read_video_frame


def write_video(path, frames: int = 20, fps: float = 10.0, fourcc: str = "MJPG"):
    """Frame i: red = 12·i, green = 100, on a 32×24 picture (OpenCV writes BGR)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (32, 24))
    for i in range(frames):
        bgr = np.zeros((24, 32, 3), np.uint8)
        bgr[:, :, 2], bgr[:, :, 1] = 12 * i, 100
        writer.write(bgr)
    writer.release()
    return path


@pytest.mark.parametrize("name,fourcc", [("clip.avi", "MJPG"), ("clip.mp4", "mp4v")])
def test_every_kth_frame_with_keys(tmp_path, name, fourcc):
    write_video(tmp_path / name, fourcc=fourcc)
    found = discover(tmp_path, SamplingOptions(video_every=5))
    assert [s.frame for s in found.samples] == [0, 5, 10, 15]
    assert [s.key for s in found.samples] == [f"{name}#{i}" for i in (0, 5, 10, 15)]
    assert {s.kind for s in found.samples} == {"video"}


def test_target_fps(tmp_path):
    p = write_video(tmp_path / "clip.avi", frames=20, fps=10.0)
    assert frame_indices(p, fps=2.5) == [0, 4, 8, 12, 16]
    assert frame_indices(p, fps=100.0) == list(range(20))  # bounded by the file's own rate


def test_frames_hold_the_right_pictures(tmp_path):
    p = write_video(tmp_path / "clip.avi")
    for i in (0, 7, 19):
        rgb = read_video_frame(p, i)
        assert rgb.shape == (24, 32, 3) and rgb.dtype == np.float32
        assert rgb[..., 0].mean() == pytest.approx(12 * i / 255, abs=0.03)  # lossy MJPG
        assert rgb[..., 1].mean() == pytest.approx(100 / 255, abs=0.03)


def test_load_many_streams_and_matches_single_reads(tmp_path):
    write_video(tmp_path / "clip.avi")
    refs = discover(tmp_path, SamplingOptions(video_every=3)).samples
    contract = PreprocessContract(channels=3, size=16, mean=(0.5,), std=(0.25,))
    arr, kept, skipped = load_many(refs, contract)
    assert kept == list(range(len(refs))) and not skipped
    for k in (0, len(refs) - 1):
        np.testing.assert_allclose(arr[k], contract.prepare(load_sample(refs[k])), atol=1e-6)
    assert np.all(np.diff(arr[:, :, :, 0].mean(axis=(1, 2))) > 0)  # red grows frame by frame


def test_broken_videos_are_skipped_with_reasons(tmp_path):
    write_video(tmp_path / "good.avi", frames=4)
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "noise.mkv").write_bytes(np.random.default_rng(0).bytes(4096))
    found = discover(tmp_path)
    reasons = {s.path.name: s.reason for s in found.skipped}
    assert reasons["empty.mp4"] == "empty file (0 bytes)"
    assert reasons["noise.mkv"].startswith(("not a readable video", "video holds no frames"))
    assert len(found.samples) == 4


def test_missing_frame_is_a_clear_error(tmp_path):
    p = write_video(tmp_path / "clip.avi", frames=3)
    with pytest.raises(VideoReadError, match="frame 9 could not be read"):
        read_video_frame(p, 9)


def test_without_opencv_the_message_names_the_install(tmp_path, monkeypatch):
    p = write_video(tmp_path / "clip.avi", frames=2)
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(VideoReadError, match="pip install opencv-python-headless"):
        frame_indices(p)
    assert "OpenCV" in discover(tmp_path).skipped[0].reason


def test_bad_options_refused(tmp_path):
    p = write_video(tmp_path / "clip.avi", frames=2)
    with pytest.raises(VideoReadError):
        frame_indices(p, every=0)
    with pytest.raises(VideoReadError):
        frame_indices(p, fps=-1)


@pytest.mark.parametrize("name,fourcc", [("long.avi", "MJPG"), ("long.mp4", "mp4v")])
def test_distant_frames_by_seek_match_a_sequential_read(tmp_path, name, fourcc):
    path = tmp_path / name
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, (16, 16))
    for i in range(160):  # frame i: red = 12·(i mod 20), green = 30·(i div 20)
        bgr = np.zeros((16, 16, 3), np.uint8)
        bgr[:, :, 2], bgr[:, :, 1] = 12 * (i % 20), 30 * (i // 20)
        writer.write(bgr)
    writer.release()
    for i in (3, 77, 151):
        rgb = read_video_frame(path, i)  # 77 and 151 are reached by a seek
        assert rgb[..., 0].mean() == pytest.approx(12 * (i % 20) / 255, abs=0.03), i
        assert rgb[..., 1].mean() == pytest.approx(30 * (i // 20) / 255, abs=0.03), i
