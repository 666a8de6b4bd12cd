"""The node's JSON-lines log: one object per event, ids salted, never patient data.

Series and instances appear as ``salted_id(UID)``; AE titles and DIMSE statuses as they are.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from cossl_edge.privacy import salted_id


class EventLog:
    def __init__(self, path: Path, salt: str | None = None, echo: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.salt = salt
        self._f = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self.echo = echo

    def id(self, uid: str) -> str:
        return salted_id(uid, self.salt)

    def __call__(self, event: str, **fields) -> None:
        line = json.dumps({"t": round(time.time(), 3), "event": event, **fields},
                          separators=(",", ":"), default=str)
        with self._lock:
            self._f.write(line + "\n")
            self._f.flush()
        if self.echo:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        with self._lock:
            self._f.close()
