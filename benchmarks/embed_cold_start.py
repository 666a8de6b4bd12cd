"""Edge benchmark: `cossl-edge embed` from process start, and folder throughput.

Builds a run directory by hand (PretrainConfig + a random-init ResNet-18 in encoder.pt),
exports it with ``cossl_edge.export.export_run`` (static int8), then times the CLI as a
child process: wall clock from spawn to exit, peak RSS from ``/usr/bin/time -f %M``.

    .venv/bin/python benchmarks/embed_cold_start.py [--cli .venv-edge/bin/cossl-edge]

Writes the figures between the edge markers of docs/benchmarks.md (other sections untouched).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cossl_edge.contract import PreprocessContract

ROOT = Path(__file__).resolve().parents[1]
from doc_section import replace_section
from random_model import exported_random_model

DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- edge:start -->", "<!-- edge:end -->"


def write_images(folder: Path, n: int, size: int = 64) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = (rng.random((size, size)) * 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:05d}.png")
    return folder


def run_child(cmd: list[str], scratch: Path) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MB, CPU seconds) of one child process, spawn to exit.

    Linux keeps ru_maxrss across execve, so a child forked straight from this process
    (which holds torch) would report this process's size. /usr/bin/time forks the command
    from its own small process; without it, os.wait4 gives an over-estimate."""
    timer = Path("/usr/bin/time")
    report = scratch / "time.txt"
    full = [str(timer), "-f", "%M %U %S", "-o", str(report), *cmd] if timer.exists() else cmd
    t0 = time.perf_counter()
    proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-500:]}")
    if timer.exists():
        kib, user, system = report.read_text().split()[-3:]
        return wall, int(kib) / 1024, float(user) + float(system)
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def measure(cli: str, model: Path, work: Path, n_folder: int, repeats: int) -> dict:
    one = write_images(work / "one", 1)
    folder = write_images(work / "folder", n_folder)
    single = [run_child([cli, "embed", str(model), str(one), "--out",
                         str(work / f"one-{i}.npz")], work) for i in range(repeats)]
    walls, rss, cpu = zip(*single, strict=True)
    fwall, frss, _ = run_child([cli, "embed", str(model), str(folder), "--out",
                                str(work / "folder.npz")], work)
    owall, _, _ = run_child([cli, "embed", str(model), str(folder), "--out",
                             str(work / "folder1.npz"), "--threads", "1", "--batch-size", "4"],
                            work)
    return {"cold_wall_s": walls[0], "median_wall_s": float(np.median(walls)),
            "max_wall_s": max(walls), "min_wall_s": min(walls), "peak_rss_mb": max(rss),
            "median_cpu_s": float(np.median(cpu)), "load": os.getloadavg()[0],
            "folder_images": n_folder,
            "folder_wall_s": fwall, "folder_images_per_s": n_folder / fwall,
            "folder_1thread_images_per_s": n_folder / owall,
            "folder_peak_rss_mb": frss, "model_mb": model.stat().st_size / 2**20}


def section(r: dict, width: float, cli: str) -> str:
    ok = r["median_wall_s"] <= 1.0 and r["peak_rss_mb"] <= 250
    runs = f"{r['min_wall_s']:.2f} / {r['median_wall_s']:.2f} / {r['max_wall_s']:.2f} s"
    speed = f"{r['folder_images_per_s']:.0f} images/s ({r['folder_wall_s']:.1f} s)"
    return f"""{START}
## Edge: `cossl-edge embed` from process start (int8 ResNet-18)

`benchmarks/embed_cold_start.py` — random-init ResNet-18 (width {width}, small stem, 1 channel,
64 px), exported with `cossl_edge.export.export_run` to static int8
({r['model_mb']:.1f} MB); CLI `{cli}`; {os.cpu_count()} CPUs ({platform.processor() or
platform.machine()}), shared with other jobs (1-min load average {r['load']:.1f} at the
end), so wall figures are noisy; CPU time is the steadier figure.

| measure | value | target |
|---|---|---|
| one 64-px PNG, first run, wall | {r['cold_wall_s']:.2f} s | ≤ 1 s |
| one 64-px PNG, min / median / max of runs, wall | {runs} | ≤ 1 s |
| one 64-px PNG, median CPU time (user + sys) | {r['median_cpu_s']:.2f} s | – |
| one 64-px PNG, peak RSS | {r['peak_rss_mb']:.0f} MB | ≤ 250 MB |
| {r['folder_images']} PNGs, decode + embed from start (batch 16, all threads) | {speed} | – |
| same, `--threads 1 --batch-size 4` | {r['folder_1thread_images_per_s']:.0f} images/s | – |
| folder run, peak RSS | {r['folder_peak_rss_mb']:.0f} MB | – |

Targets met (median wall, peak RSS): **{'yes' if ok else 'no'}**. Wall: spawn to exit; peak RSS: `/usr/bin/time -f %M`.
{END}"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    edge_cli = ROOT / ".venv-edge" / "bin" / "cossl-edge"
    ap.add_argument("--cli", default=str(edge_cli if edge_cli.exists()
                                         else Path(os.sys.executable).parent / "cossl-edge"),
                    help="cossl-edge executable to time [default: the edge venv's]")
    ap.add_argument("--width", type=float, default=1.0, help="ResNet-18 width multiplier")
    ap.add_argument("--images", type=int, default=500, help="images in the folder runs")
    ap.add_argument("--repeats", type=int, default=5, help="single-image runs")
    ap.add_argument("--no-write", action="store_true", help="print only, leave the docs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = exported_random_model(
            work / "run", write_images(work / "calib", 64), arch="resnet18",
            width=args.width, contract=PreprocessContract(channels=1, size=64))
        result = measure(args.cli, model, work, args.images, args.repeats)
    text = section(result, args.width, Path(args.cli).relative_to(ROOT)
                   if Path(args.cli).is_relative_to(ROOT) else args.cli)
    print(text)
    if not args.no_write:
        replace_section(START, END, text)


if __name__ == "__main__":
    main()
