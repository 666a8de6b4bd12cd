"""Reading a run directory's ``config.json``: the one loader that evaluation and export use.

A missing or damaged file becomes one :class:`~cossl_edge.rundir.RunDirError` line (a
``ValueError``) naming the file and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

from cossl_edge import rundir
from cossl_edge.training.config import PretrainConfig


def load_run_config(run_dir: str | Path) -> tuple[PretrainConfig, dict]:
    """(the run's configuration, the facts ``config.json`` holds beyond it)."""
    path = rundir.require(run_dir, rundir.CONFIG, "this is not a pretraining run directory "
                          "(cossl-edge pretrain writes config.json)")
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise TypeError("top level is not a JSON object")
        config = PretrainConfig.load(path)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as e:
        raise rundir.RunDirError(f"{path}: corrupt run configuration ({short_error(e)}); "
                                 "restore it from a backup or re-run cossl-edge pretrain") from e
    known = set(config.to_dict())
    return config, {k: v for k, v in raw.items() if k not in known}


def short_error(e: BaseException) -> str:
    """An exception as at most 160 characters on one line (its type when it has no text)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."
