"""The results store of a study: one SQLite row per cell (``<study dir>/results.sqlite``).

A row holds the cell's identity (id, kind, dataset, method, backbone, task, protocol, label count,
seed), its status (``pending`` -> ``running`` -> ``done`` | ``failed``), the full resolved config as
JSON, and once finished the result: the key columns of the downstream result dict (metric,
higher_is_better, val, test, val_last, test_last, still_improving, steps, seconds, subset_sha), the
whole dict as JSON, the error text of a failure, wall time, package version, git commit and
timestamps. A budget-check cell (kind ``check``, an attempt of ``budget: auto``) also names the cell
it re-runs (``check_of``) and its budget multiple (``budget_factor``); the ``budget_decisions`` table
keeps, per checked cell, which of its attempts counts and why (:meth:`ResultsDB.record_budget`).
Every attempt stays a row of its own. A downstream or check cell of an SSL method names the dataset its
pretraining saw (``pretrained_on``, factor bits: its own dataset unless the study transfers; NULL for
scratch arms and pretraining cells).

A database written by an earlier version is migrated when it is opened (:meth:`ResultsDB._migrate`).

Why SQLite: it is in the standard library, a study is one file to copy, and its transactions make
the store crash-safe. Every write is one transaction in WAL mode, so a ``kill -9`` leaves either the
old row or the new one. The cell id is the primary key and a ``done`` row is never overwritten, so two
runs over the same study can never duplicate or clobber a finished cell.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import subprocess
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from selfstudy import __version__
from selfstudy.errors import UserError
from selfstudy.study.spec import cell_id

DB_NAME = "results.sqlite"
STATUSES = ("pending", "running", "done", "failed")

#: Columns of the downstream result dict stored as their own columns (the rest stays in ``result``).
#: Float fields of the training-loop config (``TrainConfig``) that only a pretraining cell's
#: ``overrides`` set. Before the typed config layer an int given for one of them kept its type in the
#: cell's config, so ``grad_clip: 1`` and ``grad_clip: 1.0`` were two cells (:meth:`ResultsDB.
#: _migrate_train_floats`). Frozen: it describes the ids of databases written before.
_TRAIN_FLOATS = ("eps", "sgd_momentum", "warmup_max_fraction", "grad_clip")

RESULT_COLUMNS = ("metric", "higher_is_better", "val", "test", "val_last", "test_last", "still_improving",
                  "steps", "seconds", "subset_sha")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    cell_id          TEXT PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('pretrain', 'downstream', 'check')),
    dataset          TEXT NOT NULL,
    method           TEXT NOT NULL,
    backbone         TEXT NOT NULL,
    task             TEXT,
    protocol         TEXT,
    n_labels         INTEGER,
    seed             INTEGER NOT NULL,
    pretrain_id      TEXT,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'done', 'failed')),
    config           TEXT NOT NULL,
    metric           TEXT,
    higher_is_better INTEGER,
    val              REAL,
    test             REAL,
    val_last         REAL,
    test_last        REAL,
    still_improving  INTEGER,
    steps            INTEGER,
    seconds          REAL,
    subset_sha       TEXT,
    result           TEXT,
    error            TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    wall_seconds     REAL,
    version          TEXT,
    git_commit       TEXT,
    host             TEXT,
    pid              INTEGER,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    check_of         TEXT,
    budget_factor    REAL,
    pretrained_on    TEXT
);
CREATE INDEX IF NOT EXISTS cells_status ON cells (status, kind);
CREATE TABLE IF NOT EXISTS budget_decisions (
    cell_id          TEXT PRIMARY KEY,
    status           TEXT NOT NULL CHECK (status IN ('converged', 'run', 'not_converged', 'unchecked')),
    counted_id       TEXT NOT NULL,
    counted_factor   REAL NOT NULL,
    next_factor      REAL,
    cap              REAL,
    gain             REAL,
    tolerance        REAL,
    attempts         TEXT NOT NULL,
    decided_at       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subsets (sha TEXT PRIMARY KEY, n INTEGER NOT NULL, indices TEXT NOT NULL);
"""


def now() -> str:
    """The current UTC time, ISO 8601 to the millisecond."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the source tree this package runs from (``-dirty`` if it has local changes),
    or None outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


class ResultsDB:
    """A study's results store. Open with ``ResultsDB(path)`` (a file, created with its schema if
    missing) or ``ResultsDB.open(study_dir_or_file)``; use as a context manager or call :meth:`close`.

    Only the process that runs the study writes; readers (``study status``, ``report``) may open it at
    any time (WAL lets them read while it writes).
    """

    def __init__(self, path: str | os.PathLike, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise UserError(f"no results database at {self.path}: give a study folder (it holds "
                            f"{DB_NAME}) or the .sqlite file itself")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly one
            # logical write.
            self._con = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
            self._con.row_factory = sqlite3.Row
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._con.execute("PRAGMA busy_timeout=60000")
            if create:
                with self._tx():
                    for stmt in _SCHEMA.split(";"):
                        if stmt.strip():
                            self._con.execute(stmt)
                    self._migrate()
            else:
                self._con.execute("SELECT 1 FROM cells LIMIT 1")
        except sqlite3.DatabaseError as e:
            raise UserError(f"{self.path} is not a selfstudy results database ({e})") from None

    def _migrate(self) -> None:
        """Bring a database written by an earlier version up to the current schema (inside the
        caller's transaction): the ``kind`` check gained ``'check'`` (budget-check cells); the
        ``check_of`` and ``budget_factor`` columns came with ``budget: auto`` (filled in from the
        check cells' configs); ``budget_decisions`` is created by the schema itself; ``pretrained_on``
        came with transfer (a pretrained cell's own dataset, as every cell before it was)."""
        row = self._con.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='cells'").fetchone()
        had_source = row is None or "pretrained_on" in row["sql"]
        if row is not None and "'check'" not in row["sql"]:
            self._rebuild_cells()
        cols = {r["name"] for r in self._con.execute("PRAGMA table_info(cells)").fetchall()}
        for name, sql_type in (("check_of", "TEXT"), ("budget_factor", "REAL"), ("pretrained_on", "TEXT")):
            if name not in cols:
                self._con.execute(f"ALTER TABLE cells ADD COLUMN {name} {sql_type}")
        if not had_source:
            # Before transfer, a pretrained cell's checkpoint always came from its own dataset (a config
            # that says otherwise is trusted: it is what the cell ran).
            for r in self._con.execute("SELECT cell_id, dataset, config FROM cells WHERE kind!='pretrain' "
                                       "AND pretrain_id IS NOT NULL").fetchall():
                cfg = json.loads(r["config"]) if r["config"] else {}
                src = (cfg.get("pretrained_on") or {}).get("factors") or r["dataset"]
                self._con.execute("UPDATE cells SET pretrained_on=? WHERE cell_id=?", (src, r["cell_id"]))
        missing = self._con.execute("SELECT cell_id, config FROM cells WHERE kind='check' AND "
                                    "(check_of IS NULL OR budget_factor IS NULL)").fetchall()
        for r in missing:
            cfg = json.loads(r["config"]) if r["config"] else {}
            self._con.execute("UPDATE cells SET check_of=?, budget_factor=? WHERE cell_id=?",
                              (cfg.get("check_of"), _factor(cfg.get("budget_factor")), r["cell_id"]))
        self._migrate_train_floats()

    def _migrate_train_floats(self) -> None:
        """Cells whose pretraining config gave an int for a float training-loop field (``grad_clip: 1``)
        get the id today's spec reader gives them (it converts by type hint, so ``1`` and ``1.0`` are one
        cell), and so do the cells that load or re-run them; the meta ``plan`` and the budget decisions
        follow. A row is only re-keyed when its stored id is the hash of its stored config (it was
        written by the spec reader), and not onto an id the database already holds."""
        rows = self._con.execute("SELECT cell_id, config FROM cells").fetchall()
        configs = {r["cell_id"]: json.loads(r["config"]) for r in rows if r["config"]}
        remap: dict[str, str] = {}
        for cid, cfg in configs.items():
            train = (cfg.get("config") or {}).get("train") if cfg.get("kind") == "pretrain" else None
            if not isinstance(train, dict) or cell_id(cfg) != cid:
                continue
            fixed = {k: float(v) if k in _TRAIN_FLOATS and type(v) is int else v for k, v in train.items()}
            if any(type(fixed[k]) is not type(train[k]) for k in train):
                cfg["config"]["train"] = fixed
                remap[cid] = cell_id(cfg)
        if not remap:
            return
        for kind in ("downstream", "check"):  # checks re-run downstream cells: after them
            for cid, cfg in configs.items():
                if cfg.get("kind") != kind or cid in remap or cell_id(cfg) != cid:
                    continue
                refs = [k for k in ("pretrain", "check_of") if cfg.get(k) in remap]
                for k in refs:
                    cfg[k] = remap[cfg[k]]
                if refs:
                    remap[cid] = cell_id(cfg)
        taken, moved = set(configs), {}
        for old, new in remap.items():
            if new in taken:
                continue  # the new-style cell is there already; the old row stays as it was
            cfg = configs[old]
            self._con.execute("UPDATE cells SET cell_id=?, config=?, pretrain_id=?, check_of=? WHERE cell_id=?",
                              (new, json.dumps(cfg, sort_keys=True, default=str), cfg.get("pretrain"),
                               cfg.get("check_of") if cfg.get("kind") == "check" else None, old))
            taken.add(new)
            moved[old] = new
        for r in self._con.execute("SELECT key, value FROM meta").fetchall():
            value = _renamed(r["value"], moved)
            if value != r["value"]:
                self._con.execute("UPDATE meta SET value=? WHERE key=?", (value, r["key"]))
        cols = [c["name"] for c in self._con.execute("PRAGMA table_info(budget_decisions)").fetchall()]
        for r in self._con.execute("SELECT rowid, * FROM budget_decisions").fetchall():
            new_row = {c: _renamed(r[c], moved) if isinstance(r[c], str) else r[c] for c in cols}
            if any(new_row[c] != r[c] for c in cols):
                self._con.execute(f"UPDATE budget_decisions SET {', '.join(f'{c}=?' for c in cols)} WHERE rowid=?",
                                  (*[new_row[c] for c in cols], r["rowid"]))

    def _rebuild_cells(self) -> None:
        """The cells table rebuilt with today's schema (SQLite cannot change a CHECK in place)."""
        cols = [r["name"] for r in self._con.execute("PRAGMA table_info(cells)").fetchall()]
        self._con.execute("ALTER TABLE cells RENAME TO cells_old")
        self._con.execute("DROP INDEX IF EXISTS cells_status")
        for stmt in _SCHEMA.split(";"):
            if "CREATE TABLE IF NOT EXISTS cells" in stmt or "cells_status" in stmt:
                self._con.execute(stmt)
        names = ", ".join(cols)
        self._con.execute(f"INSERT INTO cells ({names}) SELECT {names} FROM cells_old")
        self._con.execute("DROP TABLE cells_old")

    @classmethod
    def open(cls, where: str | os.PathLike, create: bool = False) -> "ResultsDB":
        """The store of a study folder (``<where>/results.sqlite``) or of a ``.sqlite`` file."""
        p = Path(where)
        return cls(p / DB_NAME if p.is_dir() or (create and not p.suffix) else p, create=create)

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> "ResultsDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front: a second writer waits instead of failing mid-way.
        self._con.execute("BEGIN IMMEDIATE")
        try:
            yield self._con
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")

    # --- meta -------------------------------------------------------------------------------------

    def set_meta(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable) under ``key``, replacing what was there."""
        with self._tx() as c:
            c.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                      (key, json.dumps(value, sort_keys=True, default=str)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    # --- writing cells ----------------------------------------------------------------------------

    def add_cells(self, cells: Iterable) -> int:
        """Register cells as ``pending`` (those already present are left untouched). Returns how many
        were new. ``cells`` are :class:`selfstudy.study.spec.Cell` objects."""
        stamp = now()
        rows = [(c.id, c.kind, c.dataset, c.method, c.backbone, c.task, c.protocol, c.n_labels, c.seed,
                 c.pretrain_id, json.dumps(c.config, sort_keys=True, default=str), stamp,
                 c.config.get("check_of") if c.kind == "check" else None,
                 _factor(c.config.get("budget_factor")) if c.kind == "check" else None,
                 getattr(c, "pretrained_on", None)) for c in cells]
        with self._tx() as con:
            before = con.total_changes
            con.executemany(
                "INSERT OR IGNORE INTO cells (cell_id, kind, dataset, method, backbone, task, protocol, "
                "n_labels, seed, pretrain_id, config, created_at, check_of, budget_factor, pretrained_on) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            return con.total_changes - before

    def reset_stale(self) -> int:
        """Turn every ``running`` cell back into ``pending`` (call only while holding the study lock:
        then nobody else can be running them, so they were left by a process that died). Returns how
        many."""
        with self._tx() as con:
            return con.execute("UPDATE cells SET status='pending', pid=NULL WHERE status='running'").rowcount

    def mark_running(self, cell_id: str) -> None:
        """A cell started (in this process or a worker it submitted to)."""
        with self._tx() as con:
            con.execute("UPDATE cells SET status='running', attempts=attempts+1, started_at=?, pid=?, host=? "
                        "WHERE cell_id=? AND status!='done'", (now(), os.getpid(), socket.gethostname(),
                                                               cell_id))

    def finish(self, cell_id: str, result: Mapping, wall_seconds: float | None = None) -> bool:
        """Store a finished cell's result dict and mark it ``done``.

        Returns False (and changes nothing) if the cell was already done: a result is written once.
        The cell must have been registered with :meth:`add_cells`.
        """
        result = dict(result)
        # The labeled rows are kept once per subset (many cells share one), not in every cell's JSON.
        indices = result.pop("subset_indices", None)
        cols = {k: _column_value(k, result.get(k)) for k in RESULT_COLUMNS}
        sets = ", ".join(f"{k}=?" for k in cols)
        with self._tx() as con:
            if indices is not None and result.get("subset_sha"):
                con.execute("INSERT OR IGNORE INTO subsets (sha, n, indices) VALUES (?, ?, ?)",
                            (result["subset_sha"], len(indices), json.dumps([int(i) for i in indices])))
            cur = con.execute(
                f"UPDATE cells SET status='done', {sets}, result=?, error=NULL, wall_seconds=?, version=?, "
                f"git_commit=?, finished_at=? WHERE cell_id=? AND status!='done'",
                (*cols.values(), json.dumps(_finite_json(result), sort_keys=True, default=str),
                 wall_seconds, __version__, git_commit(), now(), cell_id))
            if cur.rowcount == 0 and con.execute("SELECT 1 FROM cells WHERE cell_id=?", (cell_id,)).fetchone() is None:
                raise KeyError(f"cell {cell_id} is not in the results database")
            return cur.rowcount == 1

    def subset(self, sha: str) -> list[int]:
        """The dataset rows of the labeled subset ``sha`` (train split indices, ascending)."""
        with self._tx() as con:
            row = con.execute("SELECT indices FROM subsets WHERE sha=?", (sha,)).fetchone()
        if row is None:
            raise KeyError(f"no labeled subset {sha} in the results database")
        return json.loads(row[0])

    def fail(self, cell_id: str, error: str, wall_seconds: float | None = None) -> None:
        """Mark a cell ``failed`` with its error text (a later run retries it)."""
        with self._tx() as con:
            con.execute("UPDATE cells SET status='failed', error=?, wall_seconds=?, version=?, git_commit=?, "
                        "finished_at=? WHERE cell_id=? AND status!='done'",
                        (error, wall_seconds, __version__, git_commit(), now(), cell_id))

    def record_budget(self, cell_id: str, decision: Mapping) -> None:
        """Keep the ``budget: auto`` decision of checked cell ``cell_id`` (replacing an earlier one):
        ``decision`` has status (converged, run, not_converged, unchecked), counted_id (the attempt
        whose numbers count), counted_factor, next_factor, cap, gain, tolerance and attempts (a list of
        dicts), as :func:`selfstudy.study.autobudget.decision_record` gives."""
        d = dict(decision)
        with self._tx() as con:
            con.execute(
                "INSERT INTO budget_decisions (cell_id, status, counted_id, counted_factor, next_factor, cap, "
                "gain, tolerance, attempts, decided_at) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(cell_id) DO "
                "UPDATE SET status=excluded.status, counted_id=excluded.counted_id, "
                "counted_factor=excluded.counted_factor, next_factor=excluded.next_factor, cap=excluded.cap, "
                "gain=excluded.gain, tolerance=excluded.tolerance, attempts=excluded.attempts, "
                "decided_at=excluded.decided_at",
                (cell_id, d["status"], d["counted_id"], float(d["counted_factor"]), _factor(d.get("next_factor")),
                 _factor(d.get("cap")), _real(d.get("gain")), _real(d.get("tolerance")),
                 json.dumps(_finite_json(d.get("attempts", [])), sort_keys=True, default=str), now()))

    # --- reading ----------------------------------------------------------------------------------

    def budget_decisions(self, cell_ids: Iterable[str] | None = None) -> dict[str, dict]:
        """checked cell id -> its stored ``budget: auto`` decision (keys as :meth:`record_budget` takes,
        plus decided_at), for the given cells or all."""
        rows = self._con.execute("SELECT * FROM budget_decisions ORDER BY cell_id").fetchall()
        wanted = None if cell_ids is None else set(cell_ids)
        out = {}
        for r in rows:
            if wanted is None or r["cell_id"] in wanted:
                d = dict(r)
                d["attempts"] = json.loads(d["attempts"])
                out[d.pop("cell_id")] = d
        return out

    def attempts(self, cell_id: str, status: str | None = "done") -> list[dict]:
        """The budget-check rows that re-ran ``cell_id`` (its attempts at larger budgets), by factor."""
        sql = "SELECT * FROM cells WHERE kind='check' AND check_of=?"
        args: list = [cell_id]
        if status is not None:
            sql += " AND status=?"
            args.append(status)
        return [_row_dict(r) for r in self._con.execute(sql + " ORDER BY budget_factor, cell_id", args).fetchall()]

    def get(self, cell_id: str) -> dict | None:
        """The row of one cell (see :meth:`rows` for its keys), or None."""
        row = self._con.execute("SELECT * FROM cells WHERE cell_id=?", (cell_id,)).fetchone()
        return None if row is None else _row_dict(row)

    def statuses(self, cell_ids: Iterable[str] | None = None) -> dict[str, str]:
        """cell id -> status, for the given cells (those in the store) or all."""
        rows = self._con.execute("SELECT cell_id, status FROM cells").fetchall()
        out = {r["cell_id"]: r["status"] for r in rows}
        if cell_ids is not None:
            wanted = set(cell_ids)
            out = {k: v for k, v in out.items() if k in wanted}
        return out

    def rows(self, status: str | None = "done", kind: str | None = "downstream",
             cell_ids: Iterable[str] | None = None) -> list[dict]:
        """Rows as dicts in the shape :func:`selfstudy.study.report.build_report` reads.

        Keys: cell_id, kind, dataset, method, backbone, task, protocol, n_labels, seed, pretrain_id,
        check_of and budget_factor (check cells; None on the others), pretrained_on (the pretraining
        dataset's factor bits; None for scratch arms), status, metric, higher_is_better (bool), val, test, val_last, test_last, still_improving (bool),
        steps, seconds, subset_sha, metrics (dict), result (the whole result dict), config (dict),
        chosen_lr and chosen_weight_decay (what a finetune cell's lr / weight-decay grid chose on
        validation; None without a grid), error,
        attempts, wall_seconds, version, git_commit, host, created_at, started_at, finished_at.
        ``status``/``kind`` None mean any; ``cell_ids`` restricts to those cells. Ordered by kind,
        dataset, backbone, task, protocol, method, label count, seed.
        """
        if status is not None and status not in STATUSES:
            raise UserError(f"unknown cell status {status!r}; allowed: {', '.join(STATUSES)}")
        where, args = [], []
        if status is not None:
            where.append("status=?")
            args.append(status)
        if kind is not None:
            where.append("kind=?")
            args.append(kind)
        sql = "SELECT * FROM cells" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY kind DESC, dataset, backbone, task, protocol, method, n_labels, seed, cell_id"
        out = [_row_dict(r) for r in self._con.execute(sql, args).fetchall()]
        if cell_ids is not None:
            wanted = set(cell_ids)
            out = [r for r in out if r["cell_id"] in wanted]
        return out

    def counts(self, cell_ids: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
        """kind -> status -> number of cells (restricted to ``cell_ids`` if given)."""
        rows = self._con.execute("SELECT cell_id, kind, status FROM cells").fetchall()
        wanted = None if cell_ids is None else set(cell_ids)
        out: dict[str, dict[str, int]] = {}
        for r in rows:
            if wanted is None or r["cell_id"] in wanted:
                d = out.setdefault(r["kind"], {s: 0 for s in STATUSES})
                d[r["status"]] += 1
        return out

    def __len__(self) -> int:
        return self._con.execute("SELECT COUNT(*) FROM cells").fetchone()[0]


def _factor(value) -> float | None:
    """A budget multiple as a float, None when absent."""
    return None if value is None or isinstance(value, bool) else float(value)


def _real(value) -> float | None:
    """A finite float, else None."""
    if value is None or isinstance(value, bool):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _renamed(text: str, ids: Mapping[str, str]) -> str:
    """``text`` with every cell id in ``ids`` replaced by its new id (ids are 16 hex digits)."""
    for old, new in ids.items():
        text = text.replace(old, new)
    return text


def _column_value(key: str, value):
    if value is None:
        return None
    if key in ("higher_is_better", "still_improving"):
        return int(bool(value))
    if key == "steps":
        return int(value)
    if key in ("val", "test", "val_last", "test_last", "seconds"):
        v = float(value)
        return v if math.isfinite(v) else None
    return str(value)


def _finite_json(value):
    """``value`` with non-finite floats as None (JSON has no NaN), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    return value


def _row_dict(row: sqlite3.Row) -> dict:
    d = dict(row)
    d["config"] = json.loads(d["config"]) if d["config"] else {}
    d["result"] = json.loads(d["result"]) if d["result"] else None
    d["metrics"] = (d["result"] or {}).get("metrics", {})
    # The recipe a finetune cell's lr / weight-decay grid chose (train.recipe); None without a grid.
    d["chosen_lr"] = (d["result"] or {}).get("chosen_lr")
    d["chosen_weight_decay"] = (d["result"] or {}).get("chosen_weight_decay")
    for k in ("higher_is_better", "still_improving"):
        if d[k] is not None:
            d[k] = bool(d[k])
    return d
