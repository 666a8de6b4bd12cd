"""Files that survive a crash: write to a temporary name, fsync, rename, fsync the folder.

A file is either absent or complete under its final name; the temporary folder is emptied
at start. Names are salted hashes of UIDs, never UIDs or patient data.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path

from cossl_edge.privacy import salted_id


def fsync_file(path: Path) -> None:
    """Flush a file, or a folder's entries (after a rename into it), to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_dir = fsync_file  # a folder is opened and flushed the same way


def write_temp(tmp_dir: Path, data: bytes) -> Path:
    """``data`` in a new fsync'd file under ``tmp_dir`` (same file system as the spool)."""
    path = tmp_dir / f"{uuid.uuid4().hex}.part"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def publish(tmp: Path, final: Path) -> Path:
    """Move a complete temporary file to its final name, durably."""
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    return final


def write_atomic(final: Path, data: bytes, tmp_dir: Path | None = None) -> Path:
    tmp_dir = tmp_dir or final.parent
    tmp_dir.mkdir(parents=True, exist_ok=True)
    return publish(write_temp(tmp_dir, data), final)


class Spool:
    """The received instances, their temporary files and the quarantine, with disk use."""

    def __init__(self, root: Path, quarantine: Path, salt: str | None = None,
                 quarantine_limit: int = 5 << 30) -> None:
        self.root, self.quarantine_dir, self.salt = root, quarantine, salt
        self.quarantine_limit = quarantine_limit
        self.tmp = root / ".tmp"
        for d in (self.root, self.tmp, self.quarantine_dir):
            d.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp.iterdir():  # partial writes of a killed node: never acked
            leftover.unlink(missing_ok=True)
        self._lock = threading.Lock()
        self._bytes = sum(p.stat().st_size for p in self.root.rglob("*.dcm"))
        self._quarantine_bytes = sum(p.stat().st_size for p in self.quarantine_dir.glob("*.dcm"))

    @property
    def used_bytes(self) -> int:
        return self._bytes

    def path_for(self, series_uid: str, sop_uid: str) -> Path:
        return (self.root / salted_id(series_uid, self.salt)
                / f"{salted_id(sop_uid, self.salt)}.dcm")

    def reserve(self, n: int, limit: int) -> bool:
        """Count ``n`` bytes against ``limit``; False (nothing counted) when over it."""
        with self._lock:
            if self._bytes + n > limit:
                return False
            self._bytes += n
            return True

    def release(self, n: int) -> None:
        with self._lock:
            self._bytes -= n

    def quarantine(self, tmp: Path | None, data: bytes | None, reason: str, facts: dict
                   ) -> Path:
        """Keep a refused object (when it was written) and why, under a random name."""
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        target = self.quarantine_dir / f"{name}.dcm"
        size = (tmp.stat().st_size if tmp is not None and tmp.exists()
                else len(data) if data is not None else 0)
        with self._lock:
            keep = self._quarantine_bytes + size <= self.quarantine_limit
            if keep:
                self._quarantine_bytes += size
        if not keep:  # a flood of refused objects must not fill the disk: the reason only
            facts = {**facts, "object_kept": False, "why_not": "quarantine full"}
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        elif tmp is not None and tmp.exists():
            publish(tmp, target)
        elif data is not None:
            write_atomic(target, data, self.tmp)
        write_atomic(self.quarantine_dir / f"{name}.json",
                     json.dumps({"reason": reason, **facts}, indent=1).encode(), self.tmp)
        return target

    def free_files(self, paths: list[str]) -> int:
        """Remove these spool files (and their folder once empty); returns the bytes freed."""
        freed = 0
        for name in paths:
            path = Path(name)
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            freed += size
        self.release(freed)
        for folder in {Path(p).parent for p in paths}:
            try:
                folder.rmdir()  # only when empty: an instance arriving now keeps it
            except OSError:
                pass
        return freed
