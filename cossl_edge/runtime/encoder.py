"""The ONNX encoder at the edge: contract from the model file, batched embedding.

>>> enc = Encoder("encoder.int8.onnx", threads=2, spinning=False)  # doctest: +SKIP
>>> enc.embed("scans/").vectors.shape                               # doctest: +SKIP
(120, 256)

The model carries its preprocessing contract in ``metadata_props``
(:mod:`cossl_edge.runtime.metadata`); images go through the same numpy
``prepare → normalize`` code that training used, then through the session. Opening the
file and its checks are in :mod:`cossl_edge.runtime.model`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from cossl_edge.contract import ContractError, PreprocessContract
from cossl_edge.privacy import file_token
from cossl_edge.runtime import metadata as mm
from cossl_edge.runtime.model import (
    ModelError,
    check_input_shape,
    check_io,
    open_session,
    read_centering,
    refuse_volume_model,
    resolve_contract,
)
from cossl_edge.sources import (
    SampleRef,
    SamplingOptions,
    Skipped,
    SourceError,
    discover,
    load_sample,
)
from cossl_edge.sources.image_decode import ImageReadError


@dataclass
class Embeddings:
    """Vectors (N×D float32) for the samples that could be read, and those that could not."""

    vectors: np.ndarray
    samples: list[SampleRef] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def ids(self, salt: str | None = None) -> list[str]:
        return [s.sample_id(salt) for s in self.samples]


class Encoder:
    """An exported encoder (ONNX) with its preprocessing contract.

    contract: a :class:`PreprocessContract` or a JSON file holding one, for models exported
        without the contract metadata (a model that carries one keeps its own unless given).
    threads: onnxruntime intra-op threads (0: onnxruntime's choice, all cores).
    spinning: let idle threads spin-wait; ``False`` saves power on battery devices.
    """

    def __init__(self, path: str | Path, contract: PreprocessContract | str | Path | None = None,
                 threads: int = 0, spinning: bool = True) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found; check the path")
        self.threads = threads
        self.session = open_session(self.path, threads, spinning)
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        refuse_volume_model(self.path, self.metadata)
        self.contract = resolve_contract(self.path, self.metadata, contract)
        check_io(self.path, self.session)
        check_input_shape(self.path, self.session, self.contract, contract)
        self.centering = read_centering(self.path, self.metadata)

    @cached_property
    def sha256(self) -> str:
        h = hashlib.sha256()
        with self.path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    @cached_property
    def dim(self) -> int:
        shape = self.session.get_outputs()[0].shape
        if shape and isinstance(shape[-1], int):
            return int(shape[-1])
        return int(self.run(np.zeros((1, *self.input_shape), np.float32)).shape[1])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c = self.contract
        return (c.channels, c.size, c.size)

    # -- running -------------------------------------------------------------------------
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Normalised N×C×S×S float32 → N×D float32 embeddings (one session call)."""
        out = self.session.run([mm.OUTPUT], {mm.INPUT: np.ascontiguousarray(batch, np.float32)})
        return np.asarray(out[0], np.float32)

    def embed_prepared(self, prepared: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """N×S×S×C images already through ``contract.prepare`` → N×D."""
        n = len(prepared)
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        parts = [self.run(self.contract.normalize(prepared[i : i + batch_size]))
                 for i in range(0, n, batch_size)]
        return np.concatenate(parts)

    def embed_arrays(self, images: Sequence[np.ndarray] | np.ndarray,
                     batch_size: int = 64) -> np.ndarray:
        """[0, 1] images → N×D. A list of H×W[×C] arrays, an N×H×W array (grayscale batch),
        an N×H×W×C array, or a single H×W image."""
        if isinstance(images, np.ndarray) and images.ndim == 2:
            images = [images]
        prepared = [self.contract.prepare(im) for im in images]
        if not prepared:
            return np.zeros((0, self.dim), np.float32)
        return self.embed_prepared(np.stack(prepared), batch_size)

    def embed(self, source, batch_size: int = 64,
              sampling: SamplingOptions | None = None) -> Embeddings:
        """Embed arrays (see :meth:`embed_arrays`), a folder, a file, or a list of paths.

        ``sampling`` thins DICOM series and videos as pretraining did (default: every
        sample). Unreadable files are skipped and listed in ``Embeddings.skipped``.
        """
        if isinstance(source, np.ndarray) or (
            isinstance(source, list | tuple) and source and isinstance(source[0], np.ndarray)
        ):
            return Embeddings(self.embed_arrays(source, batch_size))
        if isinstance(source, str | Path):
            found = discover(source, sampling)
            samples, skipped = found.samples, list(found.skipped)
        else:
            samples, skipped = [], []
            for p in source:
                if isinstance(p, SampleRef):
                    samples.append(p)
                else:
                    found = discover(p, sampling)
                    samples += found.samples
                    skipped += found.skipped
        return self.embed_samples(samples, batch_size, skipped=skipped)

    def embed_samples(self, samples: Sequence[SampleRef], batch_size: int = 64,
                      on_batch: Callable[[int], None] | None = None,
                      skipped: list[Skipped] | None = None) -> Embeddings:
        kept: list[SampleRef] = []
        skipped = list(skipped or [])
        parts: list[np.ndarray] = []
        for refs, vectors, bad in self.iter_batches(samples, batch_size):
            kept += refs
            skipped += bad
            parts.append(vectors)
            if on_batch:
                on_batch(len(refs) + len(bad))
        vectors = np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)
        return Embeddings(vectors, kept, skipped)

    def iter_batches(self, samples: Sequence[SampleRef], batch_size: int = 64
                     ) -> Iterator[tuple[list[SampleRef], np.ndarray, list[Skipped]]]:
        """Yield (samples read, their N×D vectors, samples skipped) per batch."""
        for refs, prepared, bad in self.iter_prepared(samples, batch_size):
            vectors = (self.run(self.contract.normalize(prepared)) if len(refs)
                       else np.zeros((0, self.dim), np.float32))
            yield refs, vectors, bad

    def iter_prepared(self, samples: Sequence[SampleRef], batch_size: int = 64
                      ) -> Iterator[tuple[list[SampleRef], np.ndarray, list[Skipped]]]:
        """Yield (samples read, their N×S×S×C prepared images, samples skipped) per batch;
        the next batch is decoded in a background thread while the caller runs this one."""
        chunks = [list(samples[i : i + batch_size]) for i in range(0, len(samples), batch_size)]
        if not chunks:
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self._decode, chunks[0])
            for nxt in chunks[1:] + [None]:
                decoded = pending.result()
                if nxt is not None:
                    pending = pool.submit(self._decode, nxt)
                yield decoded

    # -- the local map (models exported with --local-map) --------------------------------
    @cached_property
    def has_local_map(self) -> bool:
        return mm.LOCAL_MAP in {o.name for o in self.session.get_outputs()}

    @property
    def pooling(self) -> str:
        """How ``embedding`` pools ``local_map``: the method metadata's ``pool``, else mean."""
        try:
            method = json.loads(self.metadata.get(mm.KEY_METHOD) or "{}")
        except json.JSONDecodeError:
            method = {}
        return str(method.get("pool") or "mean") if isinstance(method, dict) else "mean"

    def require_local_map(self) -> None:
        if not self.has_local_map:
            raise ModelError(f"{self.path}: the model has no {mm.LOCAL_MAP!r} output, which "
                             "a local classifier needs; re-export the run with "
                             "`cossl-edge export RUN --local-map`")

    @cached_property
    def has_anomaly_map(self) -> bool:
        return mm.ANOMALY_MAP in {o.name for o in self.session.get_outputs()}

    def require_anomaly_map(self) -> None:
        if not self.has_anomaly_map:
            raise ModelError(f"{self.path}: the model has no {mm.ANOMALY_MAP!r} output (the "
                             "normal model of its training images), which an anomaly "
                             "classifier needs; export a run that pretrain finished with "
                             "this version, or use --classifier proto")

    def run_anomaly(self, batch: np.ndarray) -> np.ndarray:
        """Normalised N×C×S×S float32 → N×h×w anomaly maps (the normal model's z-scores)."""
        self.require_anomaly_map()
        out = self.session.run([mm.ANOMALY_MAP],
                               {mm.INPUT: np.ascontiguousarray(batch, np.float32)})
        return np.asarray(out[0], np.float32)

    def run_readings(self, batch: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Several outputs of one session call: {name: array} for ``names``."""
        out = self.session.run(list(names), {mm.INPUT: np.ascontiguousarray(batch, np.float32)})
        return {n: np.asarray(o, np.float32) for n, o in zip(names, out, strict=True)}

    def read_prepared(self, prepared: np.ndarray, names: Sequence[str],
                      batch_size: int = 64) -> dict[str, np.ndarray]:
        """N×S×S×C images already through ``contract.prepare`` → {output name: N×…}, in
        batches of ``batch_size`` (:meth:`run_readings` on each)."""
        parts = [self.run_readings(self.contract.normalize(prepared[i:i + batch_size]), names)
                 for i in range(0, len(prepared), batch_size)]
        return {n: np.concatenate([p[n] for p in parts]) for n in names}

    def require(self, name: str) -> None:
        """Refuse, with the fix, a model without the output ``name``."""
        if name == mm.LOCAL_MAP:
            self.require_local_map()
        elif name == mm.ANOMALY_MAP:
            self.require_anomaly_map()

    def run_local(self, batch: np.ndarray) -> np.ndarray:
        """Normalised N×C×S×S float32 → N×D×h×w local maps (the map before pooling)."""
        self.require_local_map()
        out = self.session.run([mm.LOCAL_MAP],
                               {mm.INPUT: np.ascontiguousarray(batch, np.float32)})
        return np.asarray(out[0], np.float32)

    def _decode(self, refs: list[SampleRef]
                ) -> tuple[list[SampleRef], np.ndarray, list[Skipped]]:
        kept, arrays, bad = [], [], []
        for ref in refs:
            try:
                arrays.append(self.contract.prepare(load_sample(ref, self.contract)))
                kept.append(ref)
            except (ImageReadError, SourceError, ContractError, ValueError, OSError) as e:
                bad.append(Skipped(ref.path, _clean_reason(str(e), ref.path)))
            except Exception as e:  # a decoder bug on one file must not stop an archive run
                reason = f"decoder failed ({type(e).__name__}: {e})"
                bad.append(Skipped(ref.path, _clean_reason(reason, ref.path)))
        shape = (0, self.contract.size, self.contract.size, self.contract.channels)
        return kept, (np.stack(arrays) if arrays else np.zeros(shape, np.float32)), bad


def open_with_contract(model: str | Path, contract: dict | None, threads: int = 0,
                       spinning: bool = True) -> Encoder:
    """The encoder of ``model``; a contract recorded elsewhere (a classifier file's) serves a
    model exported without one."""
    try:
        return Encoder(model, threads=threads, spinning=spinning)
    except ModelError as e:
        if contract is None or "no preprocessing contract" not in str(e):
            raise
        return Encoder(model, PreprocessContract.from_dict(contract), threads, spinning)


def _clean_reason(reason: str, path: Path) -> str:
    """Decoder messages may quote the file's path: replace it by its token."""
    return reason.replace(str(path), file_token(path))
