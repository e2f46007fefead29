"""The default job store: one SQLite file. Jobs are rows of JSON; events are rows numbered per job from 0."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict, fields
from pathlib import Path

from umamba.server.jobs import Job

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, user TEXT NOT NULL, state TEXT NOT NULL,
                                 created REAL NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (job_id TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL,
                                   PRIMARY KEY (job_id, seq));
"""
_JOB_FIELDS = {f.name for f in fields(Job)}


class SQLiteJobStore:
    """Thread-safe (one connection behind a lock); WAL so readers do not wait for the writer on disk."""

    def __init__(self, path: str | Path):
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _job(body: str) -> Job:
        data = json.loads(body)
        return Job(**{k: v for k, v in data.items() if k in _JOB_FIELDS})  # rows of a later version may have more

    def add(self, job: Job) -> None:
        with self._lock:
            self._db.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, ?)",
                             (job.id, job.user, job.state, job.created, json.dumps(asdict(job))))

    def save(self, job: Job) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET state = ?, body = ? WHERE id = ?",
                             (job.state, json.dumps(asdict(job)), job.id))

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._job(row[0]) if row else None

    def list(self, user: str | None = None, states: tuple[str, ...] | None = None) -> list[Job]:
        sql, args = "SELECT body FROM jobs WHERE 1", []
        if user is not None:
            sql += " AND user = ?"
            args.append(user)
        if states:
            sql += f" AND state IN ({', '.join('?' * len(states))})"
            args += list(states)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created, id", args).fetchall()
        return [self._job(r[0]) for r in rows]

    def count(self, state: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,)).fetchone()[0]

    def append_event(self, job_id: str, event: dict) -> int:
        with self._lock:
            seq = self._db.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM events WHERE job_id = ?",
                                   (job_id,)).fetchone()[0]
            self._db.execute("INSERT INTO events VALUES (?, ?, ?)", (job_id, seq, json.dumps(event)))
            return seq

    def events(self, job_id: str, since: int = 0) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM events WHERE job_id = ? AND seq >= ? ORDER BY seq",
                                    (job_id, max(0, int(since)))).fetchall()
        return [json.loads(r[0]) for r in rows]
