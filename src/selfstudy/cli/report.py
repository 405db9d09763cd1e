"""``selfstudy report``: (re)build a study's HTML report from its results database."""

from __future__ import annotations

import argparse
from pathlib import Path

from selfstudy.errors import UserError

_EPILOG = """examples:
  selfstudy report studies/quick                        # writes studies/quick/report.html
  selfstudy report studies/quick/results.sqlite -o /tmp/quick/report.html
  selfstudy report studies/paper --utility paper        # the original code's raw interpolation
  selfstudy report studies/paper --utility powerlaw     # a fitted curve, may extrapolate (marked ~)

The report works on a study that is still running or was stopped: it uses the finished cells."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="write a study's HTML report (+ PNG figures, cells.csv) from its results",
        description="Build the report of a study from its results database: summary.json (utility and Δ "
                    "with paired intervals, the paper's five findings tested, flags) and the HTML and "
                    "summary.txt rendered from it.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", type=Path, metavar="DB_OR_DIR", help="a study folder or its results.sqlite")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="the HTML file to write (default: report.html in the study folder)")
    p.add_argument("--all", action="store_true",
                   help="use every finished cell in the database, not only those of the last spec run")
    p.add_argument("--utility", choices=("isotonic", "paper", "powerlaw"), default="isotonic",
                   help="how the scratch curve is read (default: isotonic fit in log labels)")
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="paired seed-level resamples for U's standard error (default 1000)")
    p.set_defaults(func=run)


def run(args) -> int:
    from selfstudy.study.db import ResultsDB
    from selfstudy.study.runner import write_report

    src = Path(args.source)
    if not src.exists():
        raise UserError(f"no study at {src}: give a study folder (it holds results.sqlite) or the .sqlite file")
    if args.bootstrap < 0:
        raise UserError(f"--bootstrap must be a whole number >= 0, got {args.bootstrap}")
    folder = src if src.is_dir() else src.parent
    with ResultsDB.open(src) as db:
        spec = db.get_meta("spec")
        plan = None if args.all else db.get_meta("plan")
        rows = db.rows(status="done", kind="downstream", cell_ids=plan)
        checks = db.rows(status="done", kind="check", cell_ids=plan)
        db_path = db.path
    if not rows:
        raise UserError(f"{db_path} has no finished downstream cells yet: nothing to report "
                        f"(see `selfstudy study status {folder}`)")
    meta = {"study": (spec or {}).get("name", "?"), "database": str(db_path), "cells": len(rows)}
    html, summary = write_report(rows, folder, spec, meta, out_html=args.out, checks=checks,
                                 utility_method=args.utility, bootstrap=args.bootstrap)
    print(summary)
    print(f"report: {html}")
    return 0
