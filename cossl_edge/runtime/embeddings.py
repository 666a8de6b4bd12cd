"""Embedding files, and embedding a large archive in resumable, shardable chunks.

``emb.npz`` holds ``embeddings`` (N×D float32), ``ids`` (salted hashes), ``model_sha256`` and
``contract`` (JSON); ``emb.ids.csv`` lists the ids in row order. Nothing in either file names
a patient or a path. An id→path map is written only on request, for local use.

While a run is going, finished chunks live in ``emb.npz.partial/`` (one ``.npz`` per chunk,
written atomically, plus ``state.json``); a killed run started again with the same arguments
skips the samples already done. The last step merges the chunks and removes the folder.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cossl_edge.privacy import file_token, salted_id
from cossl_edge.runtime.encoder import Encoder
from cossl_edge.sources import SampleRef


class EmbeddingFileError(ValueError):
    """An embedding file or partial run that cannot be used (names the file and the fix)."""


@dataclass
class EmbeddingFile:
    ids: list[str]
    vectors: np.ndarray
    model_sha256: str
    contract: str


@dataclass
class EmbedReport:
    out: Path
    embedded: int
    resumed: int  # samples found already done in a partial run
    skipped: dict[str, int] = field(default_factory=dict)  # reason → count
    skipped_tokens: list[str] = field(default_factory=list)  # first few, safe to print


def ids_csv_path(out: Path) -> Path:
    return out.with_name(out.stem + ".ids.csv")


def save_embeddings(out: str | Path, ids: Sequence[str], vectors: np.ndarray,
                    model_sha256: str, contract_json: str) -> Path:
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, embeddings=np.asarray(vectors, np.float32), ids=np.asarray(ids, dtype=str),
             model_sha256=np.asarray(model_sha256), contract=np.asarray(contract_json))
    tmp.replace(out)
    with ids_csv_path(out).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "id"])
        w.writerows(enumerate(ids))
    return out


def load_embeddings(path: str | Path) -> EmbeddingFile:
    path = Path(path)
    if not path.is_file():
        raise EmbeddingFileError(f"{path}: embedding file not found; run `cossl-edge embed`")
    try:
        with np.load(path, allow_pickle=False) as z:
            return EmbeddingFile([str(i) for i in z["ids"]], z["embeddings"],
                                 str(z["model_sha256"]), str(z["contract"]))
    except (KeyError, ValueError, OSError) as e:
        raise EmbeddingFileError(f"{path}: not a cossl-edge embedding file ({e})") from e


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` (0 ≤ i < n) → (i, n); ``None`` → (0, 1)."""
    if not text:
        return 0, 1
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        i, n = -1, 0
    if not 0 <= i < n:
        raise EmbeddingFileError(f"--shard {text!r}: expected i/n with 0 ≤ i < n, e.g. 0/4")
    return i, n


def shard_samples(samples: Sequence[SampleRef], i: int, n: int) -> list[SampleRef]:
    """Deterministic partition by a hash of each sample's key: shard membership does not
    depend on the listing order or on files added to other shards."""
    if n == 1:
        return list(samples)
    return [s for s in samples
            if int(hashlib.sha256(s.key.encode()).hexdigest()[:8], 16) % n == i]


def embed_to_file(encoder: Encoder, samples: Sequence[SampleRef], out: str | Path, *,
                  root: Path, batch_size: int = 64, chunk_size: int = 1024,
                  salt: str | None = None, id_map: Path | None = None,
                  on_progress: Callable[[int], None] | None = None) -> EmbedReport:
    """Embed ``samples`` into ``out`` (.npz + ids CSV), resuming a partial run."""
    out = Path(out)
    work = out.with_name(out.name + ".partial")
    state = {"model_sha256": encoder.sha256, "contract": encoder.contract.to_json(),
             "salt_check": salted_id("salt-check", salt), "samples": len(samples)}
    done = _open_partial(work, state)
    todo = [s for s in samples if s.sample_id(salt) not in done]
    report = EmbedReport(out, 0, len(samples) - len(todo))
    if on_progress and report.resumed:
        on_progress(report.resumed)
    for c in range(0, len(todo), chunk_size):
        chunk = todo[c : c + chunk_size]
        kept, vecs = [], []
        for refs, vectors, bad in encoder.iter_batches(chunk, batch_size):
            kept += [r.sample_id(salt) for r in refs]
            vecs.append(vectors)
            for b in bad:
                report.skipped[b.reason] = report.skipped.get(b.reason, 0) + 1
                if len(report.skipped_tokens) < 5:
                    report.skipped_tokens.append(file_token(b.path, root))
            if on_progress:
                on_progress(len(refs) + len(bad))
        attempted = [s.sample_id(salt) for s in chunk]
        failed = sorted(set(attempted) - set(kept))
        _write_chunk(work, kept, np.concatenate(vecs), failed, attempted)
        report.embedded += len(kept)
    _merge(work, out, samples, salt, encoder)
    if id_map is not None:
        write_id_map(id_map, samples, salt, root)
    shutil.rmtree(work)
    return report


def _open_partial(work: Path, state: dict) -> set[str]:
    """Ids already done (embedded or failed) by an earlier run with the same settings."""
    state_file = work / "state.json"
    if not work.exists() or not any(work.iterdir()):  # nothing saved yet: start afresh
        work.mkdir(parents=True, exist_ok=True)
        tmp = work / "state.tmp"
        tmp.write_text(json.dumps(state))
        tmp.replace(state_file)
        return set()
    try:
        old = json.loads(state_file.read_text())
    except (OSError, json.JSONDecodeError):
        old = None
    if old != state:
        raise EmbeddingFileError(
            f"{work}: a partial run with another model, contract, salt or sample list; "
            "delete this folder to start over, or rerun with the original arguments")
    done: set[str] = set()
    for f in sorted(work.glob("chunk-*.npz")):
        with np.load(f, allow_pickle=False) as z:
            done.update(str(i) for i in z["attempted"])
    return done


def _write_chunk(work: Path, ids: list[str], vectors: np.ndarray, failed: list[str],
                 attempted: list[str]) -> None:
    n = len(list(work.glob("chunk-*.npz")))
    tmp = work / f"chunk-{n:06d}.tmp.npz"
    np.savez(tmp, ids=np.asarray(ids, dtype=str), embeddings=vectors.astype(np.float32),
             failed=np.asarray(failed, dtype=str), attempted=np.asarray(attempted, dtype=str))
    tmp.replace(work / f"chunk-{n:06d}.npz")  # atomic: a kill never leaves half a chunk


def _merge(work: Path, out: Path, samples: Sequence[SampleRef], salt: str | None,
           encoder: Encoder) -> None:
    """Chunks → one file in sample order, through a memory-mapped array on disk, so an
    archive's embeddings never need to fit in memory at once."""
    chunks = sorted(work.glob("chunk-*.npz"))
    done: set[str] = set()
    for f in chunks:
        with np.load(f, allow_pickle=False) as z:
            done.update(str(i) for i in z["ids"])
    # a file copied twice (same SOPInstanceUID) has one id: keep its first row only
    ids = list(dict.fromkeys(i for i in (s.sample_id(salt) for s in samples) if i in done))
    row = {i: n for n, i in enumerate(ids)}
    table = np.lib.format.open_memmap(work / "merged.npy", mode="w+", dtype=np.float32,
                                      shape=(len(ids), encoder.dim))
    for f in chunks:
        with np.load(f, allow_pickle=False) as z:
            if len(z["ids"]):
                table[[row[str(i)] for i in z["ids"]]] = z["embeddings"]
    save_embeddings(out, ids, table, encoder.sha256, encoder.contract.to_json())
    del table


def write_id_map(path: Path, samples: Sequence[SampleRef], salt: str | None, root: Path) -> None:
    with Path(path).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "path"])
        for s in samples:
            rel = s.path.relative_to(root) if s.path.is_relative_to(root) else s.path
            frame = "" if s.frame is None else f"#{s.frame}"
            w.writerow([s.sample_id(salt), rel.as_posix() + frame])
