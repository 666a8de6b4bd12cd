"""The state database's layout: its tables, the columns added since the first release, the
row of an instance, and how the file is opened (WAL, synchronous=FULL).

UIDs are stored (the node needs them to build the SR); patient data is not.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    series_uid TEXT NOT NULL,
    sop_class TEXT NOT NULL,
    path TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    modality TEXT, image_type TEXT, body_part TEXT,
    frames INTEGER NOT NULL DEFAULT 1,
    calling_ae TEXT,
    received_at REAL NOT NULL,
    selected_by TEXT,
    state TEXT NOT NULL DEFAULT 'received',
    label TEXT, probability REAL, proba TEXT, reason TEXT, heat TEXT,
    classified_at REAL,
    classify_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid, state);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    first_received_at REAL NOT NULL,
    last_received_at REAL NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'receiving',
    rule TEXT,
    result TEXT,
    completed_at REAL,
    sr_path TEXT, sr_uid TEXT, sc_paths TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_send_at REAL,
    sent_at REAL,
    error TEXT,
    spool_freed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS series_state ON series(state);
"""
# Columns added after the first release: a database written before gets them at open.
ADDED_COLUMNS = (("instances", "heat", "TEXT"), ("series", "sc_paths", "TEXT"))


@dataclass
class Instance:
    sop_uid: str
    series_uid: str
    sop_class: str
    path: str
    bytes: int
    modality: str = ""
    image_type: str = ""
    body_part: str = ""
    frames: int = 1
    calling_ae: str = ""
    received_at: float = 0.0
    selected_by: str | None = None
    state: str = "received"
    label: str | None = None
    probability: float | None = None
    proba: str | None = None
    reason: str | None = None
    heat: str | None = None  # kind ``local``: the h×w heatmap as JSON
    classified_at: float | None = None
    classify_count: int = 0


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating, or bringing up to date) the state database at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    for table, column, kind in ADDED_COLUMNS:
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    return db
