import sqlite3

import pytest

from selfstudy.errors import UserError
from selfstudy.study.db import ResultsDB
from selfstudy.study.spec import Cell, cell_id


def _cell(method="scratch", n=100, kind="downstream", seed=0):
    cfg = {"kind": kind, "method": method, "n_labels": n, "seed": seed}
    if kind == "pretrain":
        return Cell(id=cell_id(cfg), kind=kind, dataset="1111", method=method, backbone="resnet9-tiny",
                    seed=seed, config=cfg)
    return Cell(id=cell_id(cfg), kind=kind, dataset="1111", method=method, backbone="resnet9-tiny", seed=seed,
                task="classification", protocol="finetune", n_labels=n, config=cfg)


def _result(test=0.5):
    return {"metric": "accuracy", "higher_is_better": True, "val": test + 0.01, "test": test,
            "val_last": test, "test_last": test - 0.01, "still_improving": False, "steps": 300,
            "seconds": 7.5, "metrics": {"test/accuracy": test, "val/accuracy": test + 0.01},
            "subset_sha": "abc123", "budget": {"max_steps": 300}}


def test_cells_are_added_once_and_start_pending(tmp_path):
    cells = [_cell(n=100), _cell(n=1000)]
    with ResultsDB(tmp_path / "r.sqlite") as db:
        assert db.add_cells(cells) == 2
        assert db.add_cells(cells + [_cell(n=3000)]) == 1
        assert len(db) == 3
        assert set(db.statuses().values()) == {"pending"}
        assert db.get(cells[0].id)["config"] == cells[0].config


def test_finished_row_has_report_shape(tmp_path):
    c = _cell()
    with ResultsDB(tmp_path / "r.sqlite") as db:
        db.add_cells([c])
        db.mark_running(c.id)
        assert db.get(c.id)["status"] == "running"
        assert db.finish(c.id, _result(0.6), wall_seconds=8.0)
        (row,) = db.rows()
    for key in ("cell_id", "dataset", "method", "backbone", "task", "protocol", "n_labels", "seed", "status",
                "metric", "higher_is_better", "test", "val", "test_last", "still_improving", "steps",
                "seconds", "metrics", "config"):
        assert key in row
    assert row["status"] == "done" and row["test"] == 0.6 and row["val"] == pytest.approx(0.61)
    assert row["higher_is_better"] is True and row["still_improving"] is False
    assert row["metrics"] == {"test/accuracy": 0.6, "val/accuracy": 0.61}
    assert row["subset_sha"] == "abc123" and row["steps"] == 300 and row["wall_seconds"] == 8.0
    assert row["result"]["budget"] == {"max_steps": 300}
    assert row["attempts"] == 1 and row["finished_at"] and row["version"]


def test_a_done_cell_is_written_once(tmp_path):
    c = _cell()
    path = tmp_path / "r.sqlite"
    with ResultsDB(path) as db:
        db.add_cells([c])
        assert db.finish(c.id, _result(0.6))
        assert not db.finish(c.id, _result(0.9))   # a second run's result does not replace it
        db.fail(c.id, "boom")                      # nor does a failure
        db.mark_running(c.id)
        assert db.reset_stale() == 0
    # A second connection (another run) sees one row with the first result.
    with ResultsDB(path) as db:
        assert db.add_cells([c]) == 0
        rows = db.rows()
        assert len(rows) == 1 and rows[0]["test"] == 0.6 and rows[0]["status"] == "done"
    con = sqlite3.connect(path)
    assert con.execute("SELECT COUNT(*) FROM cells WHERE cell_id=?", (c.id,)).fetchone()[0] == 1


def test_failed_and_stale_cells(tmp_path):
    a, b = _cell(n=100), _cell(n=1000)
    with ResultsDB(tmp_path / "r.sqlite") as db:
        db.add_cells([a, b])
        db.mark_running(a.id)
        db.mark_running(b.id)
        db.fail(b.id, "Traceback...\nValueError: nope", wall_seconds=1.0)
        assert db.reset_stale() == 1                  # a was left running
        assert db.statuses() == {a.id: "pending", b.id: "failed"}
        assert db.rows() == []
        (f,) = db.rows(status="failed")
        assert f["error"].endswith("nope")
        # A failed cell can still finish on a later attempt.
        db.mark_running(b.id)
        assert db.finish(b.id, _result())
        assert db.get(b.id)["error"] is None and db.get(b.id)["attempts"] == 2
        assert db.counts() == {"downstream": {"pending": 1, "running": 0, "done": 1, "failed": 0}}


def test_rows_filter_and_nonfinite_values(tmp_path):
    p, d1, d2 = _cell("rotation", kind="pretrain"), _cell(n=100), _cell(n=1000)
    with ResultsDB(tmp_path / "r.sqlite") as db:
        db.add_cells([p, d1, d2])
        db.finish(p.id, {"checkpoint": "x/final.pt", "metrics": {"loss": 0.1}})
        db.finish(d1.id, {**_result(), "val": float("nan"), "metrics": {"test/accuracy": float("inf")}})
        db.finish(d2.id, _result(0.7))
        assert [r["cell_id"] for r in db.rows(kind="pretrain")] == [p.id]
        assert len(db.rows(kind=None)) == 3
        assert [r["cell_id"] for r in db.rows(cell_ids=[d2.id])] == [d2.id]
        r1 = db.get(d1.id)
        assert r1["val"] is None and r1["metrics"] == {"test/accuracy": None}
        with pytest.raises(UserError, match="unknown cell status"):
            db.rows(status="finished")


def test_meta_round_trips(tmp_path):
    with ResultsDB(tmp_path / "r.sqlite") as db:
        assert db.get_meta("spec") is None
        db.set_meta("spec", {"name": "x", "labels": [1, 2]})
        db.set_meta("spec", {"name": "y"})
        assert db.get_meta("spec") == {"name": "y"}


def test_open_folder_and_missing_or_foreign_file(tmp_path):
    with ResultsDB.open(tmp_path / "study", create=True) as db:
        assert db.path == tmp_path / "study" / "results.sqlite"
    with ResultsDB.open(tmp_path / "study") as db:
        assert len(db) == 0
    with pytest.raises(UserError, match="no results database"):
        ResultsDB.open(tmp_path / "nothing.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(UserError, match="not a selfstudy results database"):
        ResultsDB.open(junk)


def test_finish_of_unknown_cell_is_an_error(tmp_path):
    with ResultsDB(tmp_path / "r.sqlite") as db:
        with pytest.raises(KeyError):
            db.finish("0" * 16, _result())


def test_labeled_subsets_are_kept_once_per_sha(tmp_path):
    a, b = _cell(method="scratch"), _cell(method="rotation")
    with ResultsDB(tmp_path / "r.sqlite") as db:
        db.add_cells([a, b])
        db.finish(a.id, {**_result(0.5), "subset_indices": [3, 7, 11]})
        db.finish(b.id, {**_result(0.6), "subset_indices": [3, 7, 11]})
        assert db.subset("abc123") == [3, 7, 11]
        assert all("subset_indices" not in r["result"] for r in db.rows())
        assert db._con.execute("SELECT COUNT(*) FROM subsets").fetchone()[0] == 1
        with pytest.raises(KeyError, match="no labeled subset"):
            db.subset("nope")


def test_a_database_of_the_earlier_schema_is_migrated_for_check_cells(tmp_path):
    # The schema before budget checks: kind limited to pretrain/downstream.
    path = tmp_path / "results.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE cells (cell_id TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN "
                "('pretrain', 'downstream')), dataset TEXT NOT NULL, method TEXT NOT NULL, backbone TEXT NOT "
                "NULL, task TEXT, protocol TEXT, n_labels INTEGER, seed INTEGER NOT NULL, pretrain_id TEXT, "
                "status TEXT NOT NULL DEFAULT 'pending', config TEXT NOT NULL, metric TEXT, higher_is_better "
                "INTEGER, val REAL, test REAL, val_last REAL, test_last REAL, still_improving INTEGER, steps "
                "INTEGER, seconds REAL, subset_sha TEXT, result TEXT, error TEXT, attempts INTEGER NOT NULL "
                "DEFAULT 0, wall_seconds REAL, version TEXT, git_commit TEXT, host TEXT, pid INTEGER, "
                "created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT)")
    con.execute("INSERT INTO cells (cell_id, kind, dataset, method, backbone, seed, status, config, test, "
                "created_at) VALUES ('old', 'downstream', '1111', 'scratch', 'resnet9-tiny', 0, 'done', '{}', "
                "0.25, 'then')")
    con.commit()
    con.close()
    with ResultsDB(path) as db:
        check = Cell(id="chk", kind="check", dataset="1111", method="scratch", backbone="resnet9-tiny",
                     seed=0, task="classification", protocol="finetune", n_labels=100,
                     config={"check_of": "old"})
        assert db.add_cells([check]) == 1
        assert db.get("old")["test"] == 0.25 and db.get("old")["status"] == "done"
        assert db.get("chk")["kind"] == "check"
    with ResultsDB(path) as db:  # opening again changes nothing
        assert db.statuses() == {"old": "done", "chk": "pending"}


# The schema of the database as the code before ``budget: auto`` wrote it (budget checks, no
# check_of/budget_factor columns, no budget_decisions table), verbatim.
_SCHEMA_BEFORE_AUTO = """
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
    finished_at      TEXT
);
CREATE INDEX IF NOT EXISTS cells_status ON cells (status, kind);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subsets (sha TEXT PRIMARY KEY, n INTEGER NOT NULL, indices TEXT NOT NULL);
"""


def test_a_database_from_before_budget_auto_gets_the_attempt_columns_and_the_decisions_table(tmp_path):
    path = tmp_path / "results.sqlite"
    con = sqlite3.connect(path)
    con.executescript(_SCHEMA_BEFORE_AUTO)
    con.execute("INSERT INTO cells (cell_id, kind, dataset, method, backbone, task, protocol, n_labels, seed, "
                "status, config, val, test, created_at) VALUES ('down', 'downstream', '1111', 'scratch', "
                "'resnet9-tiny', 'classification', 'finetune', 100, 0, 'done', '{\"kind\": \"downstream\"}', "
                "0.30, 0.29, 'then')")
    con.execute("INSERT INTO cells (cell_id, kind, dataset, method, backbone, task, protocol, n_labels, seed, "
                "status, config, val, test, created_at) VALUES ('chk', 'check', '1111', 'scratch', "
                "'resnet9-tiny', 'classification', 'finetune', 100, 0, 'done', "
                "'{\"budget_factor\": 2.0, \"check_of\": \"down\", \"kind\": \"check\"}', 0.40, 0.41, 'then')")
    con.commit()
    con.close()
    with ResultsDB(path) as db:
        assert (db.get("chk")["check_of"], db.get("chk")["budget_factor"]) == ("down", 2.0)
        assert (db.get("down")["check_of"], db.get("down")["budget_factor"]) == (None, None)
        assert [r["cell_id"] for r in db.attempts("down")] == ["chk"]
        assert db.get("down")["test"] == 0.29 and db.budget_decisions() == {}
        # A new attempt at 4x, added by today's code, carries its columns.
        four = Cell(id="chk4", kind="check", dataset="1111", method="scratch", backbone="resnet9-tiny", seed=0,
                    task="classification", protocol="finetune", n_labels=100,
                    config={"kind": "check", "check_of": "down", "budget_factor": 4.0})
        assert db.add_cells([four]) == 1
        assert [(r["cell_id"], r["budget_factor"]) for r in db.attempts("down", status=None)] == [
            ("chk", 2.0), ("chk4", 4.0)]
        db.record_budget("down", {"status": "run", "counted_id": "chk", "counted_factor": 2.0, "next_factor": 4.0,
                                  "cap": 8.0, "gain": 0.1, "tolerance": 0.01,
                                  "attempts": [{"cell_id": "down", "factor": 1.0, "val": 0.3},
                                               {"cell_id": "chk", "factor": 2.0, "val": 0.4}]})
    with ResultsDB(path) as db:  # opening again changes nothing; a decision is replaced, not added
        assert db.statuses() == {"down": "done", "chk": "done", "chk4": "pending"}
        d = db.budget_decisions()["down"]
        assert (d["status"], d["counted_id"], d["counted_factor"], d["next_factor"], d["gain"]) == (
            "run", "chk", 2.0, 4.0, 0.1)
        db.record_budget("down", {**d, "status": "converged", "next_factor": None, "gain": float("nan")})
        d = db.budget_decisions(["down"])["down"]
        assert (d["status"], d["next_factor"], d["gain"]) == ("converged", None, None)
        assert [a["cell_id"] for a in d["attempts"]] == ["down", "chk"]
        with pytest.raises(sqlite3.IntegrityError):
            db.record_budget("x", {**d, "status": "maybe"})


# The schema as the code before transfer wrote it (commit 2884b3a: attempt columns and the decisions
# table, no pretrained_on column), verbatim.
_SCHEMA_BEFORE_TRANSFER = """
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
    budget_factor    REAL
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


def test_a_database_from_before_transfer_gets_pretrained_on_from_each_cells_own_dataset(tmp_path):
    path = tmp_path / "results.sqlite"
    con = sqlite3.connect(path)
    con.executescript(_SCHEMA_BEFORE_TRANSFER)
    for cid, kind, method, pre in (("pre", "pretrain", "rotation", None), ("rot", "downstream", "rotation", "pre"),
                                   ("scr", "downstream", "scratch", None), ("chk", "check", "rotation", "pre")):
        con.execute("INSERT INTO cells (cell_id, kind, dataset, method, backbone, task, protocol, n_labels, "
                    "seed, pretrain_id, status, config, test, created_at) VALUES (?, ?, '0110', ?, 'resnet9-tiny', "
                    "?, ?, ?, 0, ?, 'done', '{}', 0.5, 'then')",
                    (cid, kind, method, None if kind == "pretrain" else "classification",
                     None if kind == "pretrain" else "finetune", None if kind == "pretrain" else 100, pre))
    con.commit()
    con.close()
    with ResultsDB(path) as db:
        got = {r["cell_id"]: r["pretrained_on"] for r in db.rows(status=None, kind=None)}
        assert got == {"pre": None, "rot": "0110", "scr": None, "chk": "0110"}
        assert db.get("rot")["test"] == 0.5
        # Today's code adds a transferred cell with its pretraining dataset.
        moved = Cell(id="x", kind="downstream", dataset="0110", method="rotation", backbone="resnet9-tiny", seed=0,
                     task="classification", protocol="finetune", n_labels=100, pretrain_id="pre2",
                     pretrained_on="1111", config={"kind": "downstream"})
        assert db.add_cells([moved]) == 1
    with ResultsDB(path) as db:  # opening again changes nothing
        got = {r["cell_id"]: r["pretrained_on"] for r in db.rows(status=None, kind=None)}
        assert got == {"pre": None, "rot": "0110", "scr": None, "chk": "0110", "x": "1111"}


def test_a_database_from_before_the_typed_config_layer_gets_todays_ids(tmp_path):
    """tests/study/data/grad_clip_int_before_typed_config.sqlite was written by the code before the typed
    config layer (the smoke preset with ``methods.rotation.overrides.grad_clip=1``; its pretraining cell
    and one downstream cell done). That code hashed the int as given, so ``grad_clip: 1`` was another cell
    than ``grad_clip: 1.0``; today both are the float one. Opening the database re-keys the pretraining
    cell, the cells that load it and the checks that re-run those, keeping their status and results."""
    import shutil
    from pathlib import Path

    src = Path(__file__).parent / "data" / "grad_clip_int_before_typed_config.sqlite"
    path = tmp_path / "results.sqlite"
    shutil.copy(src, path)
    # The ids that code gave: with grad_clip=1 as stored, and with grad_clip=1.0 (what they become).
    old = ["9dbea7911344b8b3", "09db431cbbef5b7c", "c200c08dcba90356", "54c870542219bb65", "0a52c343047e09b7",
           "40cf22ccd1a8cb7f", "f361db1510a3ea99", "0513c3bd59db2339", "f1234054d6f04a84", "034db1baa55b03e8"]
    new = ["4b339d5d87b0996f", "09db431cbbef5b7c", "126e4e58bae5e60e", "54c870542219bb65", "0c608f53da4974ab",
           "40cf22ccd1a8cb7f", "d3736dd31ff0048e", "0513c3bd59db2339", "fd4ab019225a9e8e", "034db1baa55b03e8"]
    with ResultsDB(path) as db:
        assert db.get_meta("plan") == new
        rows = {r["cell_id"]: r for r in db.rows(status=None, kind=None)}
        assert sorted(rows) == sorted(new)
        pre = rows["4b339d5d87b0996f"]
        assert pre["config"]["config"]["train"] == {"grad_clip": 1.0}
        assert type(pre["config"]["config"]["train"]["grad_clip"]) is float
        for cid, r in rows.items():
            assert cell_id(r["config"]) == cid
            if r["kind"] != "pretrain" and r["method"] != "scratch":
                assert r["pretrain_id"] == r["config"]["pretrain"] == "4b339d5d87b0996f"
            if r["kind"] == "check":
                assert r["check_of"] == r["config"]["check_of"] in rows
        assert db.statuses([new[0], new[1], new[2]]) == {new[0]: "done", new[1]: "done", new[2]: "pending"}
        assert rows[new[1]]["test"] == 0.25
    with ResultsDB(path) as db:  # a second open changes nothing
        assert sorted(r["cell_id"] for r in db.rows(status=None, kind=None)) == sorted(new)
    assert set(old) - set(new) == {"9dbea7911344b8b3", "c200c08dcba90356", "0a52c343047e09b7",
                                   "f361db1510a3ea99", "f1234054d6f04a84"}


def test_rows_show_the_recipe_a_grid_chose(tmp_path):
    with ResultsDB(tmp_path / "r.sqlite") as db:
        a, b = _cell(n=100), _cell(n=1000)
        db.add_cells([a, b])
        db.finish(a.id, {**_result(), "chosen_lr": 3e-3, "chosen_weight_decay": 0.0,
                         "recipe_grid": [{"lr": 1e-3, "weight_decay": 0.0, "val": 0.4}]})
        db.finish(b.id, _result())
        rows = {r["cell_id"]: r for r in db.rows()}
        assert (rows[a.id]["chosen_lr"], rows[a.id]["chosen_weight_decay"]) == (3e-3, 0.0)
        assert rows[a.id]["result"]["recipe_grid"][0]["val"] == 0.4
        assert (rows[b.id]["chosen_lr"], rows[b.id]["chosen_weight_decay"]) == (None, None)
