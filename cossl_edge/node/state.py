"""The node's state in one SQLite file (WAL, synchronous=FULL): every instance and series and
where each stands, so that a restarted node knows exactly what is left to do.

Instance states: ``received`` → ``classified`` | ``unreadable`` | ``not_selected``.
Series states: ``receiving`` → (quiet for N s) → ``not_selected`` | ``classified`` →
``reported`` (SR written, and with a local classifier the heatmap SCs) → ``sent`` |
``send_failed``. An instance that arrives for a
series past ``receiving`` reopens it with ``revision + 1``: the next SR covers all of its
instances, and instances already classified are not classified again.

The tables and the instance row are in :mod:`cossl_edge.node.state_schema`.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from cossl_edge.node.state_schema import ADDED_COLUMNS, SCHEMA, Instance, connect

__all__ = ["ADDED_COLUMNS", "SCHEMA", "Instance", "State"]


class State:
    """Thread-safe access (one connection, one lock: writes are short)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self.db = connect(path)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def _tx(self, fn):
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self.db)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
            return out

    # -- receiving -----------------------------------------------------------------------
    def add_instance(self, inst: Instance, study_uid: str) -> bool:
        """Record a received instance; False when this SOP instance was already here (a
        resend: the file was replaced by the same object, its state is kept)."""
        now = inst.received_at

        def tx(db):
            cur = db.execute(
                "INSERT OR IGNORE INTO instances (sop_uid, series_uid, sop_class, path, bytes,"
                " modality, image_type, body_part, frames, calling_ae, received_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (inst.sop_uid, inst.series_uid, inst.sop_class, inst.path, inst.bytes,
                 inst.modality, inst.image_type, inst.body_part, inst.frames,
                 inst.calling_ae, now))
            if cur.rowcount == 0:
                return False
            db.execute(
                "INSERT INTO series (series_uid, study_uid, first_received_at,"
                " last_received_at) VALUES (?,?,?,?) ON CONFLICT(series_uid) DO UPDATE SET"
                " last_received_at=excluded.last_received_at,"
                " revision=CASE WHEN state='receiving' THEN revision ELSE revision+1 END,"
                " state='receiving', attempts=0, next_send_at=NULL, error=NULL, spool_freed=0",
                (inst.series_uid, study_uid, now, now))
            return True

        return self._tx(tx)

    def known(self, sop_uid: str) -> bool:
        with self._lock:
            return self.db.execute("SELECT 1 FROM instances WHERE sop_uid=?",
                                   (sop_uid,)).fetchone() is not None

    def paths(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self.db.execute("SELECT path FROM instances")}

    # -- the worker ----------------------------------------------------------------------
    def quiet_series(self, now: float, quiet: float) -> list[str]:
        with self._lock:
            return [r[0] for r in self.db.execute(
                "SELECT series_uid FROM series WHERE state='receiving' AND last_received_at<=?"
                " ORDER BY last_received_at", (now - quiet,))]

    def series(self, series_uid: str) -> dict:
        with self._lock:
            row = self.db.execute("SELECT * FROM series WHERE series_uid=?",
                                  (series_uid,)).fetchone()
        return dict(row) if row else {}

    def instances(self, series_uid: str, state: str | None = None) -> list[Instance]:
        q = "SELECT * FROM instances WHERE series_uid=?"
        args: tuple = (series_uid,)
        if state is not None:
            q += " AND state=?"
            args += (state,)
        with self._lock:
            rows = self.db.execute(q + " ORDER BY received_at, sop_uid", args).fetchall()
        return [Instance(**dict(r)) for r in rows]

    def pending(self, limit: int) -> list[Instance]:
        """Instances not yet classified nor ruled out, oldest first (any series state)."""
        with self._lock:
            rows = self.db.execute("SELECT * FROM instances WHERE state='received'"
                                   " ORDER BY received_at LIMIT ?", (limit,)).fetchall()
        return [Instance(**dict(r)) for r in rows]

    def save_results(self, results: dict[str, tuple],
                     not_selected: list[str] = ()) -> list[str]:
        """Per instance (label, probability, probabilities JSON, reason when unreadable[,
        heatmap JSON]), and the instances no rule selected, in one transaction. Only instances still
        ``received`` change, so each is classified at most once; returns those that did."""
        now = time.time()

        def tx(db):
            done = []
            for sop in not_selected:
                db.execute("UPDATE instances SET state='not_selected' WHERE sop_uid=? AND"
                           " state='received'", (sop,))
            for sop, (label, prob, proba, reason, *heat) in results.items():
                cur = db.execute(
                    "UPDATE instances SET state=?, label=?, probability=?, proba=?, reason=?,"
                    " heat=?, classified_at=?, classify_count=classify_count+1"
                    " WHERE sop_uid=? AND state='received'",
                    ("unreadable" if reason else "classified", label, prob, proba, reason,
                     heat[0] if heat else None, now, sop))
                if cur.rowcount:
                    done.append(sop)
            return done

        return self._tx(tx)

    def complete_series(self, series_uid: str, rule: str | None) -> str | None:
        """A quiet series becomes ``selected`` (some instance is not ruled out) or
        ``not_selected``; returns the new state (None when it changed meanwhile)."""

        def tx(db):
            any_selected = db.execute(
                "SELECT 1 FROM instances WHERE series_uid=? AND state!='not_selected'",
                (series_uid,)).fetchone()
            state = "selected" if any_selected else "not_selected"
            cur = db.execute("UPDATE series SET state=?, rule=?, completed_at=? WHERE"
                             " series_uid=? AND state='receiving'",
                             (state, rule, time.time(), series_uid))
            return state if cur.rowcount else None

        return self._tx(tx)

    def series_in(self, state: str) -> list[str]:
        with self._lock:
            return [r[0] for r in self.db.execute(
                "SELECT series_uid FROM series WHERE state=? ORDER BY last_received_at",
                (state,))]

    def series_classified(self, series_uid: str, revision: int) -> bool:
        """``selected`` → ``classified`` once no instance of it waits; False when the
        series changed meanwhile (a new instance reopened it)."""

        def tx(db):
            waiting = db.execute("SELECT 1 FROM instances WHERE series_uid=? AND"
                                 " state='received'", (series_uid,)).fetchone()
            if waiting:
                return False
            cur = db.execute("UPDATE series SET state='classified' WHERE series_uid=? AND"
                             " state='selected' AND revision=?", (series_uid, revision))
            return cur.rowcount == 1

        return self._tx(tx)

    def set_report(self, series_uid: str, revision: int, result: dict, sr_path: str,
                   sr_uid: str, send: bool, sc_paths: list[str] = ()) -> bool:
        """The SR (and the heatmap SCs sent before it) of a classified series."""

        def tx(db):
            row = db.execute("SELECT state, revision FROM series WHERE series_uid=?",
                             (series_uid,)).fetchone()
            if row is None or row["state"] != "classified" or row["revision"] != revision:
                return False
            db.execute("UPDATE series SET state='reported', result=?, sr_path=?, sr_uid=?,"
                       " sc_paths=?, attempts=0, next_send_at=? WHERE series_uid=?",
                       (json.dumps(result), sr_path, sr_uid, json.dumps(list(sc_paths)),
                        time.time() if send else None, series_uid))
            return True

        return self._tx(tx)

    def due_sends(self, now: float) -> list[dict]:
        with self._lock:
            rows = self.db.execute(
                "SELECT * FROM series WHERE state='reported' AND next_send_at IS NOT NULL"
                " AND next_send_at<=? ORDER BY next_send_at", (now,)).fetchall()
        return [dict(r) for r in rows]

    def mark_sent(self, series_uid: str, sr_uid: str) -> None:
        self._tx(lambda db: db.execute(
            "UPDATE series SET state='sent', sent_at=?, attempts=attempts+1, error=NULL"
            " WHERE series_uid=? AND sr_uid=? AND state='reported'",
            (time.time(), series_uid, sr_uid)))

    def mark_send_failed(self, series_uid: str, sr_uid: str, error: str,
                         next_at: float | None) -> None:
        self._tx(lambda db: db.execute(
            "UPDATE series SET attempts=attempts+1, error=?, next_send_at=?,"
            " state=CASE WHEN ? IS NULL THEN 'send_failed' ELSE state END"
            " WHERE series_uid=? AND sr_uid=? AND state='reported'",
            (error, next_at, next_at, series_uid, sr_uid)))

    FINISHED = ("sent", "send_failed", "not_selected", "reported")

    def claim_expired(self, before: float, forwarding: bool) -> dict[str, list[str]]:
        """Finished series whose last instance is older than ``before`` and whose files are
        still in the spool → their instances' files, marked freed in the same transaction.
        ``reported`` is finished only without a destination (else the SR waits to be sent).
        Only files the database lists are returned: an instance arriving meanwhile (its file
        renamed in, not yet committed) is never among them, and reopens the series."""
        states = [s for s in self.FINISHED if not (forwarding and s == "reported")]
        marks = ",".join("?" * len(states))

        def tx(db):
            uids = [r[0] for r in db.execute(
                f"SELECT series_uid FROM series WHERE state IN ({marks}) AND spool_freed=0"
                " AND last_received_at<?", (*states, before))]
            out = {}
            for uid in uids:
                out[uid] = [r[0] for r in db.execute(
                    "SELECT path FROM instances WHERE series_uid=?", (uid,))]
                db.execute("UPDATE series SET spool_freed=1 WHERE series_uid=?", (uid,))
            return out

        return self._tx(tx)

    # -- status --------------------------------------------------------------------------
    def counts(self) -> dict:
        with self._lock:
            inst = dict(self.db.execute(
                "SELECT state, COUNT(*) FROM instances GROUP BY state").fetchall())
            ser = dict(self.db.execute(
                "SELECT state, COUNT(*) FROM series GROUP BY state").fetchall())
        return {"instances": inst, "series": ser}
