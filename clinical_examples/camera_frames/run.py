"""Example 3: camera frames from a video file → pretrain → int8 export for an ARM vehicle
computer → embeddings and nearest-neighbour search on new frames.

    python clinical_examples/camera_frames/run.py [--tiny] [--out camera-output]

Writes two synthetic road-camera videos with OpenCV (moving cars, pedestrians and balls on
a textured road; the second video is new footage), pretrains a small co-simclr encoder on the
frames of the first (camera augmentations, RGB), exports it with ``--target arm`` (S8/S8
int8, what ARM CPUs run fastest), embeds both videos with ``cossl-edge embed``, and for each
new frame finds its nearest frame of the first video: how often does it show the same kind
of object?
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from clinical_examples.common import (  # noqa: E402
    budget,
    console,
    cossl_edge,
    example_parser,
    pretrain_and_export,
)

KINDS = ("car", "pedestrian", "ball")


def draw_frame(kind: str, t: float, rng_state: dict, size: int) -> np.ndarray:
    """One BGR uint8 frame: sky, road with lane marks moving with time, one object."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    img = np.zeros((size, size, 3), np.float32)
    horizon = size * rng_state["horizon"]
    img[yy < horizon] = rng_state["sky"]
    road = yy >= horizon
    img[road] = rng_state["road"]
    lane = road & (np.abs(xx - size / 2) < 1.5) & (((yy + 40 * t) % 12) < 6)
    img[lane] = (230, 230, 230)
    x = (rng_state["x0"] + rng_state["vx"] * t) % size
    y = horizon + rng_state["y0"] * (size - horizon)
    s = rng_state["scale"] * size
    colour = rng_state["colour"]
    if kind == "car":
        img[(np.abs(xx - x) < s) & (np.abs(yy - y) < 0.45 * s)] = colour
        for wx in (x - 0.6 * s, x + 0.6 * s):  # wheels
            img[(xx - wx) ** 2 + (yy - y - 0.45 * s) ** 2 < (0.25 * s) ** 2] = (20, 20, 20)
    elif kind == "pedestrian":
        img[(np.abs(xx - x) < 0.22 * s) & (np.abs(yy - y) < 0.9 * s)] = colour
        img[(xx - x) ** 2 + (yy - y + 1.15 * s) ** 2 < (0.25 * s) ** 2] = (180, 150, 120)
    else:
        img[(xx - x) ** 2 + (yy - y) ** 2 < (0.55 * s) ** 2] = colour
    img += rng_state["rng"].normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_video(path: Path, segments: int, frames_per_segment: int, seed: int,
                size: int = 64, fps: float = 10.0) -> list[str]:
    """An MJPG .avi of ``segments`` scenes with one object each; returns the label of every
    frame. Same arguments, same frames (up to the codec)."""
    import cv2

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size, size))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write MJPG video here")
    labels = []
    for seg in range(segments):
        kind = KINDS[(seg + seed) % len(KINDS)]
        # The scene varies less than the object, so "same kind" is a question about the
        # object: a background-matching encoder scores chance.
        state = {"horizon": rng.uniform(0.3, 0.4), "sky": rng.uniform(170, 210, 3),
                 "road": rng.uniform(70, 90, 1).repeat(3), "x0": rng.uniform(0, size),
                 "vx": rng.uniform(-25, 25), "y0": rng.uniform(0.35, 0.65),
                 "scale": rng.uniform(0.20, 0.30), "colour": rng.uniform(0, 255, 3), "rng": rng}
        for f in range(frames_per_segment):
            writer.write(draw_frame(kind, f / fps, state, size))
            labels.append(kind)
    writer.release()
    return labels


def neighbours(gallery: np.ndarray, queries: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Index of each query's nearest gallery vector (cosine after centring)."""
    from cossl_edge.fewshot import cl2n

    return np.argmax(cl2n(queries, centre) @ cl2n(gallery, centre).T, axis=1)


def frame_labels(video: Path, labels: list[str]) -> dict[str, str]:
    """Salted frame id (as ``embed`` writes it for this file) → label."""
    from cossl_edge.sources import discover

    return {s.sample_id(): labels[s.frame or 0] for s in discover(video).samples}


def main(argv: list[str] | None = None) -> dict:
    parser = example_parser(__doc__, "camera-output", "videos, run, embeddings, neighbours.csv",
                            "short videos, a few steps")
    args = parser.parse_args(argv)
    segs, per = (6, 6) if args.tiny else (60, 12)
    videos = args.out / "videos"
    with console.status("writing two synthetic road-camera videos"):
        old = write_video(videos / "drive-1.avi", segs, per, seed=1)
        new = write_video(args.out / "new" / "drive-2.avi", max(3, segs // 3), per, seed=2)
    console.print(f"{len(old)} training frames, {len(new)} new frames")
    seconds, steps = budget(args.tiny, args.time_budget, "3m")
    model = pretrain_and_export(videos, args.out / "run", size=24 if args.tiny else 32,
                                time_budget=seconds, max_steps=steps, target="arm",
                                channels=3, preset="camera")
    console.rule("embeddings and nearest-neighbour search (edge commands)")
    cossl_edge("embed", model, videos, "--out", args.out / "gallery.npz")
    cossl_edge("embed", model, args.out / "new", "--out", args.out / "new.npz")
    return search(args.out, frame_labels(videos / "drive-1.avi", old),
                  frame_labels(args.out / "new" / "drive-2.avi", new))


def search(out: Path, old_truth: dict[str, str], new_truth: dict[str, str]) -> dict:
    import csv

    from cossl_edge.runtime.embeddings import load_embeddings

    gallery, queries = load_embeddings(out / "gallery.npz"), load_embeddings(out / "new.npz")
    near = neighbours(gallery.vectors, queries.vectors, gallery.vectors.mean(axis=0))
    rows = [(q, gallery.ids[n], new_truth[q], old_truth[gallery.ids[n]])
            for q, n in zip(queries.ids, near, strict=True)]
    with (out / "neighbours.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["query_id", "neighbour_id", "query_kind", "neighbour_kind"],
                                 *rows])
    same = float(np.mean([a == b for _, _, a, b in rows]))
    console.print(f"{len(rows)} new frames: the nearest training frame shows the same kind "
                  f"of object for {100 * same:.1f}% (chance about "
                  f"{100 / len(KINDS):.0f}%) → {out / 'neighbours.csv'}")
    return {"same_kind": same, "queries": len(rows)}


if __name__ == "__main__":
    main()
