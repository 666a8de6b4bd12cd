"""Opening an exported encoder file: the onnxruntime session, and what the file must carry
(input and output names, a preprocessing contract its input can take, a valid centring
vector). Each refusal is a :class:`ModelError` whose message names the file and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from cossl_edge.contract import ContractError, PreprocessContract
from cossl_edge.runtime import metadata as mm


class ModelError(ValueError):
    """A model file the runtime cannot use (message names the file and the fix)."""


def open_session(path: Path, threads: int, spinning: bool) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(0, int(threads))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        raise ModelError(f"{path}: not a readable ONNX model ({type(e).__name__}); "
                         "re-export it with `cossl-edge export`") from e


def resolve_contract(path: Path, meta: dict[str, str],
                     given: PreprocessContract | str | Path | None) -> PreprocessContract:
    """The contract given (an object or a JSON file), else the one in the model's metadata."""
    if isinstance(given, PreprocessContract):
        return given
    if given is not None:
        file = Path(given)
        if not file.is_file():
            raise ModelError(f"{file}: contract file not found; check the --contract path")
        try:
            return PreprocessContract.from_json(file.read_text())
        except ContractError as e:
            raise ModelError(f"{file}: {e}; write the contract as PreprocessContract JSON") from e
    if mm.KEY_CONTRACT not in meta:
        raise ModelError(
            f"{path}: the model carries no preprocessing contract ({mm.KEY_CONTRACT} "
            "metadata); export it with `cossl-edge export`, or pass --contract FILE "
            "(PreprocessContract JSON, e.g. from the run's config.json)")
    try:
        return PreprocessContract.from_json(meta[mm.KEY_CONTRACT])
    except ContractError as e:
        raise ModelError(f"{path}: its contract metadata is invalid ({e}); re-export it") from e


def check_io(path: Path, session: ort.InferenceSession) -> None:
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if mm.INPUT not in inputs or mm.OUTPUT not in outputs:
        raise ModelError(f"{path}: expected input {mm.INPUT!r} and output {mm.OUTPUT!r}, "
                         f"found {inputs} → {outputs}; re-export it with `cossl-edge export`")


def refuse_volume_model(path: Path, meta: dict[str, str]) -> None:
    """A 3D encoder (``pretrain --volumes``) takes whole series, not images: one line."""
    if mm.KEY_VOLUME in meta:
        raise ModelError(f"{path}: a 3D encoder (pretrain --volumes, input N×1×S×S×S); the "
                         "image commands take 2D encoders, and per-series 3D embedding and "
                         "few-shot are not built yet (issue 30); export a 2D run for images")


def check_input_shape(path: Path, session: ort.InferenceSession, contract: PreprocessContract,
                      given) -> None:
    """Refuse at load, not at the first batch, a contract the model's input cannot take."""
    dims = session.get_inputs()[0].shape
    want = [contract.channels, contract.size, contract.size]
    fixed = [(d, w) for d, w in zip(dims[1:], want, strict=False) if isinstance(d, int)]
    if len(dims) != 4 or any(d != w for d, w in fixed):
        source = f"the contract {Path(given).name}" if isinstance(given, str | Path) else \
            "its contract"
        raise ModelError(f"{path}: the model takes {'×'.join(map(str, dims[1:]))} input but "
                         f"{source} says {contract.channels} channel(s) of {contract.size}×"
                         f"{contract.size}; pass the contract the model was exported with")


def read_centering(path: Path, meta: dict[str, str]) -> np.ndarray | None:
    if mm.KEY_CENTERING not in meta:
        return None
    try:
        return np.asarray(json.loads(meta[mm.KEY_CENTERING]), np.float32).ravel()
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise ModelError(f"{path}: its centring metadata is not a JSON list; re-export it") from e
