"""``cossl-edge embed``: a folder of images → an embedding file, resumable and shardable."""

from __future__ import annotations

from pathlib import Path

import typer

from cossl_edge.commands import edge_options as opt
from cossl_edge.commands.common import user_errors
from cossl_edge.progress import progress_bar


def embed(
    model: Path = opt.MODEL,
    data_dir: Path = typer.Argument(..., help="Folder (searched recursively) or file of "
                                    "images to embed."),
    out: Path = typer.Option(..., "--out", help="Embedding file to write (.npz); the ids go "
                             "to OUT.ids.csv next to it."),
    batch_size: int = opt.BATCH,
    threads: int = opt.THREADS,
    spin: bool = opt.SPIN,
    shard: str | None = typer.Option(None, "--shard", help="i/n: embed only shard i "
                                     "(0-based) of n; shards partition the samples "
                                     "deterministically, run one process per shard."),
    chunk_size: int = typer.Option(1024, "--chunk-size", min=1, help="Samples per saved "
                                   "chunk: a killed run resumes from the last saved chunk."),
    id_map: Path | None = typer.Option(None, "--id-map", help="Also write a CSV id,path that "
                                       "links ids back to files. It holds raw paths: keep it "
                                       "local, never share it."),
    contract: Path | None = opt.CONTRACT,
    dicom_stride: int = opt.DICOM_STRIDE,
    video_every: int = opt.VIDEO_EVERY,
    video_fps: float | None = opt.VIDEO_FPS,
) -> None:
    """Embed every image under DATA_DIR with MODEL. Ids are salted hashes (salt from
    $COSSL_EDGE_SALT); rerunning the same command after a kill resumes where it stopped."""
    from cossl_edge.runtime.embeddings import embed_to_file, parse_shard, shard_samples
    from cossl_edge.sources import discover

    with user_errors():
        i, n = parse_shard(shard)
        sampling = opt.sampling(dicom_stride, video_every, video_fps)
        encoder = opt.open_encoder(model, contract, threads, spin)
        opt.warn_int8_target(encoder)
        found = discover(data_dir, sampling, progress=True)
        samples = shard_samples(found.samples, i, n)
        root = data_dir if data_dir.is_dir() else data_dir.parent
        out.parent.mkdir(parents=True, exist_ok=True)
        with progress_bar("embedding", len(samples)) as advance:
            report = embed_to_file(encoder, samples, out, root=root, batch_size=batch_size,
                                   chunk_size=chunk_size, id_map=id_map, on_progress=advance)
    counts, tokens = opt.count_skipped(found.skipped)
    for reason, c in report.skipped.items():
        counts[reason] = counts.get(reason, 0) + c
    opt.report_skipped(counts, tokens + report.skipped_tokens)
    resumed = f" ({report.resumed} done by an earlier run)" if report.resumed else ""
    typer.echo(f"embedded {report.embedded} samples{resumed} → {out} "
               f"(+ {out.stem}.ids.csv); skipped {sum(counts.values())}")
    opt.warn_default_salt()


def register(app: typer.Typer) -> None:
    app.command(name="embed")(embed)
