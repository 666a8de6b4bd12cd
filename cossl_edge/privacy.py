"""Salted ids: no patient name, patient id or raw path in any artefact, log or message."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DEFAULT_SALT_ENV = "COSSL_EDGE_SALT"


def load_salt(salt: str | None = None) -> str:
    """The salt for ids: the argument, else ``$COSSL_EDGE_SALT``, else a fixed project salt.

    A site that shares embeddings outside should set its own secret salt, so that ids cannot
    be reversed by hashing known UIDs.
    """
    return salt or os.environ.get(DEFAULT_SALT_ENV) or "cossl-edge-v1"


def salted_id(key: str, salt: str | None = None, length: int = 16) -> str:
    """Hex digest of ``salt:key`` (sha256), truncated to ``length`` characters."""
    h = hashlib.sha256(f"{load_salt(salt)}:{key}".encode()).hexdigest()
    return h[:length]


def file_token(path: str | Path, root: str | Path | None = None) -> str:
    """A short, non-reversible name for a file, safe to print in logs and errors."""
    p = Path(path)
    key = str(p.relative_to(root)) if root is not None and p.is_relative_to(root) else str(p)
    return "file-" + salted_id(key, length=10)
