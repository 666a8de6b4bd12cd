"""Ordinary image files: PNG, JPEG, BMP, TIFF; 8/16-bit; grayscale and colour."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from cossl_edge.contract import PreprocessContract
from cossl_edge.sources import discover, load_many
from cossl_edge.sources.image_decode import ImageReadError, read_image

RAMP8 = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (8, 1))  # 8×16
RAMP16 = RAMP8.astype(np.uint16) * 257


@pytest.mark.parametrize("name", ["g.png", "g.bmp", "g.tif", "g.pgm"])
def test_8_bit_grayscale_is_exact(tmp_path, name):
    Image.fromarray(RAMP8).save(tmp_path / name)
    img = read_image(tmp_path / name)
    assert img.dtype == np.float32 and img.shape == (8, 16)
    np.testing.assert_allclose(img, RAMP8 / 255.0, atol=1e-7)


@pytest.mark.parametrize("name", ["g16.png", "g16.tif"])
def test_16_bit_grayscale_keeps_precision(tmp_path, name):
    arr = RAMP16 + 1  # values between 8-bit steps
    Image.fromarray(arr).save(tmp_path / name)
    np.testing.assert_allclose(read_image(tmp_path / name), arr / 65535.0, atol=1e-7)


@pytest.mark.parametrize("name", ["c16.png", "c16.tif"])
def test_16_bit_colour_keeps_precision(tmp_path, name):
    rgb = np.stack([RAMP16 + 3, np.full_like(RAMP16, 30001), np.zeros_like(RAMP16)], axis=2)
    cv2.imwrite(str(tmp_path / name), rgb[:, :, ::-1])  # OpenCV writes BGR
    np.testing.assert_allclose(read_image(tmp_path / name), rgb / 65535.0, atol=1e-7)


def test_16_bit_colour_without_opencv_is_an_error_not_8_bits(tmp_path, monkeypatch):
    rgb = np.stack([RAMP16 + 3] * 3, axis=2)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb)
    monkeypatch.setitem(sys.modules, "cv2", None)  # a device without OpenCV
    with pytest.raises(ImageReadError, match=r"16-bit colour.*cossl-edge\[video\]"):
        read_image(tmp_path / "c16.png")


def test_colour_png_and_jpeg(tmp_path):
    rgb = np.zeros((8, 16, 3), np.uint8)
    rgb[..., 0] = RAMP8
    rgb[..., 2] = 200
    Image.fromarray(rgb).save(tmp_path / "c.png")
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    np.testing.assert_allclose(read_image(tmp_path / "c.png"), rgb / 255.0, atol=1e-7)
    jpg = read_image(tmp_path / "c.jpg")
    assert jpg.shape == (8, 16, 3) and np.abs(jpg - rgb / 255.0).max() < 0.08


def test_rgba_and_palette_become_rgb(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 1], rgba[..., 3] = 255, 128
    Image.fromarray(rgba).save(tmp_path / "a.png")
    Image.fromarray(RAMP8).convert("P").save(tmp_path / "p.png")
    a = read_image(tmp_path / "a.png")
    assert a.shape == (4, 4, 3) and np.allclose(a[..., 1], 1.0)
    assert read_image(tmp_path / "p.png").shape == (8, 16, 3)


def test_float_tiff_taken_as_is(tmp_path):
    arr = np.linspace(0, 1, 32, dtype=np.float32).reshape(4, 8)
    Image.fromarray(arr, mode="F").save(tmp_path / "f.tif")
    np.testing.assert_allclose(read_image(tmp_path / "f.tif"), arr)


def test_bad_images_skipped_in_batches(tmp_path):
    Image.fromarray(RAMP8).save(tmp_path / "ok.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "fake.jpg").write_bytes(b"not a jpeg")
    refs = discover(tmp_path).samples
    assert len(refs) == 3
    arr, kept, skipped = load_many(refs, PreprocessContract(size=8))
    assert arr.shape == (1, 8, 8, 1) and [refs[i].path.name for i in kept] == ["ok.png"]
    assert sorted(s.reason.split(" (")[0] for s in skipped) == ["empty file",
                                                                "not a readable image"]
    with pytest.raises(ImageReadError, match="empty file"):
        read_image(tmp_path / "empty.png")
