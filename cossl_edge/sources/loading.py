"""Decoding samples through their reader, one at a time or in batches, and the native
image size of a data set."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from cossl_edge.contract import PreprocessContract
from cossl_edge.sources.image_decode import ImageReadError
from cossl_edge.sources.refs import SampleRef, Skipped, SourceError
from cossl_edge.sources.registry import reader_for_kind


def load_sample(ref: SampleRef, contract: PreprocessContract | None = None) -> np.ndarray:
    """Decode one sample to float32 H×W or H×W×3 in [0, 1]. DICOM uses the contract's
    ``window`` (``header`` when no contract is given)."""
    return reader_for_kind(ref.kind).read(ref, contract)


def load_many(refs: Iterable[SampleRef], contract: PreprocessContract
              ) -> tuple[np.ndarray, list[int], list[Skipped]]:
    """Decode and prepare samples; returns (N×size×size×C array, kept indices, skipped)."""
    out, kept, skipped = [], [], []
    for i, ref, image in _decode_all(list(refs), contract):
        try:
            if isinstance(image, Exception):
                raise image
            out.append(contract.prepare(image))
            kept.append(i)
        except (ImageReadError, SourceError, ValueError) as e:
            skipped.append(Skipped(ref.path, str(e)))
    shape = (0, contract.size, contract.size, contract.channels)
    arr = np.stack(out) if out else np.zeros(shape, np.float32)
    return arr, kept, skipped


def _frames_reader(ref: SampleRef):
    """The reader's one-pass frame decoder, when it has one (video)."""
    try:
        return reader_for_kind(ref.kind).read_frames
    except SourceError:
        return None


def _decode_all(refs: list[SampleRef], contract: PreprocessContract
                ) -> Iterator[tuple[int, SampleRef, np.ndarray | Exception]]:
    """Decoded samples in order; consecutive frames of one file whose reader can read
    several in one pass (video) are read in a single pass."""
    i = 0
    while i < len(refs):
        ref = refs[i]
        read_frames = _frames_reader(ref)
        if read_frames is None:
            try:
                yield i, ref, load_sample(ref, contract)
            except ValueError as e:
                yield i, ref, e
            i += 1
            continue
        j = i
        while j < len(refs) and refs[j].kind == ref.kind and refs[j].path == ref.path:
            j += 1
        positions: dict[int, list[int]] = {}
        for k in range(i, j):
            positions.setdefault(refs[k].frame or 0, []).append(k)
        done: set[int] = set()
        error: Exception = SourceError("frame could not be read")
        try:  # stream: one decoded frame in memory at a time
            for index, frame in read_frames(ref.path, list(positions)):
                for k in positions[index]:
                    done.add(k)
                    yield k, refs[k], frame
        except ValueError as e:
            error = e
        for k in range(i, j):
            if k not in done:
                yield k, refs[k], error
        i = j


def native_side(samples: list[SampleRef], limit: int = 64) -> int | None:
    """Median short side, in pixels, of up to ``limit`` evenly spaced samples, read from
    headers only (image headers, DICOM Rows/Columns, the video's frame size). None when no
    sample can be read."""
    if not samples:
        return None
    picks = np.unique(np.linspace(0, len(samples) - 1, min(limit, len(samples))).astype(int))
    sides = []
    for i in picks:
        ref = samples[int(i)]
        try:
            side = reader_for_kind(ref.kind).native_side(ref)
        except Exception:  # noqa: BLE001 - a file that fails here is reported by the decoder
            continue
        if side is not None:
            sides.append(int(side))
    return int(np.median(sides)) if sides else None


DETAIL_KEEP = 0.99  # the share of an image's variance its detail side keeps


def detail_side(image: np.ndarray, keep: float = DETAIL_KEEP) -> float | None:
    """The smallest short side, in pixels, to which ``image`` can be shrunk while keeping
    ``keep`` of its variance: its *detail*, independent of the size it is stored at. An 8×8
    digit stored at 32 px gives about 10; a 28-px MNIST stroke image about 24; a scan at
    300 px about 72. Read from the image's power spectrum (Hann window, so the borders add
    no false edges); images larger than 256 px are box-averaged by a whole factor first to
    save time (a side counted in cycles per image does not depend on the storage size), so
    the measure saturates near half the stored side for them. None for a constant image."""
    a = np.asarray(image, np.float64)
    if a.ndim == 3:
        a = a.mean(axis=2)
    if a.ndim != 2 or min(a.shape) < 4:
        return None
    k = -(-min(a.shape) // 256)
    if k > 1:
        h, w = (a.shape[0] // k) * k, (a.shape[1] // k) * k
        a = a[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3))
    h, w = a.shape
    x = (a - a.mean()) * np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.rfft2(x)) ** 2
    power[:, 1:] *= 2  # rfft2 stores one of each pair of conjugate columns
    total = power.sum()
    if not np.isfinite(total) or total <= 1e-12:
        return None
    short = min(h, w)
    fy = np.abs(np.fft.fftfreq(h) * h)[:, None] * (short / h)  # cycles per short side
    fx = (np.fft.rfftfreq(w) * w)[None, :] * (short / w)
    need = 2 * np.maximum(fy, fx)  # the side (px) at which that frequency survives
    order = np.argsort(need, axis=None)
    kept = np.cumsum(power.ravel()[order]) / total
    return float(need.ravel()[order][min(np.searchsorted(kept, keep), kept.size - 1)])


def data_detail(samples: list[SampleRef], contract: PreprocessContract | None = None,
                limit: int = 32) -> float | None:
    """Median :func:`detail_side` of up to ``limit`` evenly spaced samples, decoded at their
    native size (DICOM with the contract's window). None when no sample can be read."""
    if not samples:
        return None
    picks = np.unique(np.linspace(0, len(samples) - 1, min(limit, len(samples))).astype(int))
    sides = []
    for i in picks:
        try:
            side = detail_side(load_sample(samples[int(i)], contract))
        except Exception:  # noqa: BLE001 - a file that fails here is reported by the decoder
            continue
        if side is not None:
            sides.append(side)
    return float(np.median(sides)) if sides else None
