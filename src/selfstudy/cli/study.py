"""``selfstudy study``: run a whole study, see how far it got, list its cells."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from selfstudy.cli.main import Parser
from selfstudy.errors import UserError

DEFAULT_ROOT = "studies"

_RUN_EPILOG = """examples:
  selfstudy study run quick                       # the demo: a few minutes on a 2-core CPU
  selfstudy study run quick labels=[100,1000] seeds=[0,1]
  selfstudy study run paper --dir /shared/paper --executor ray    # the paper's grid on a Ray cluster
  selfstudy study run quick --executor local --workers 4          # 4 cells at a time on this machine
  selfstudy study run my_study.yaml methods.rotation.epochs=30 finetune.max_steps=2000
  selfstudy study run own --data data/mine        # your own images (from `selfstudy data import`):
                                                  # how many labels SSL saves on them
  selfstudy study run own --data data/mine backbones=[resnet18] \\
      'baselines=[{path: r18.pth, backbone: resnet18}]'   # ... and against weights you already hold

Interrupted (Ctrl-C, a crash, kill -9)? Run the same command again: finished cells are kept and
only the rest runs. The folder gets results.sqlite, report.html (+ PNGs, cells.csv) and summary.txt.
Overrides are key.sub=value with YAML values (quote lists in some shells: 'labels=[100,1000]')."""

_STATUS_EPILOG = """examples:
  selfstudy study status studies/quick
  selfstudy study status studies/quick --failed     # every failed cell with its error"""

_CELLS_EPILOG = """examples:
  selfstudy study cells quick                       # every cell of the quick preset, with its id
  selfstudy study cells paper --count               # how many, GPU-hours, budgets in samples seen
  selfstudy study cells my_study.yaml labels=[100]
  selfstudy study cells own --data data/mine --count"""


class _OverridesAnywhere(Parser):
    """A parser whose ``key=value`` overrides may come before, between or after its options: argparse
    gives a ``nargs="*"`` positional only one contiguous run, so the rest are collected here."""

    def parse_known_args(self, args=None, namespace=None):
        ns, extras = super().parse_known_args(args, namespace)
        if hasattr(ns, "overrides"):
            more = [a for a in extras if "=" in a and not a.startswith("-")]
            ns.overrides = list(ns.overrides or []) + more
            extras = [a for a in extras if a not in more]
        return ns, extras


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "study", help="run a whole study (pretrain, finetune, probe, report) and follow it",
        description="A study is a grid of datasets x methods x backbones x tasks x protocols x label counts "
                    "x seeds, given as a YAML spec or a packaged preset (quick, paper, smoke).",
        epilog="examples:\n  selfstudy study run quick\n  selfstudy study status studies/quick\n"
               "  selfstudy study cells paper --count",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="study_command", metavar="ACTION", parser_class=_OverridesAnywhere)

    r = sub.add_parser("run", help="run every unfinished cell of a study and write its report",
                       description="Run a study: render its datasets, pretrain each method once, run every "
                                   "downstream cell, then write the report and print the utility table.",
                       epilog=_RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("spec", metavar="SPEC_OR_PRESET", help="a study spec .yaml or a preset name (quick, paper, smoke)")
    r.add_argument("overrides", nargs="*", default=[], metavar="key.sub=value", help="spec overrides, YAML-typed")
    r.add_argument("--dir", type=Path, default=None,
                   help=f"study folder (default: {DEFAULT_ROOT}/<spec name>, with --data {DEFAULT_ROOT}/<spec name>-<folder name>)")
    r.add_argument("--executor", choices=("auto", "inprocess", "local", "ray"), default="auto",
                   help="where cells run: local runs them in --workers processes on this machine, "
                        "inprocess one after another, ray fans them out over a cluster; auto (the default) "
                        "picks local with a worker per core on a CPU with 2+ cores, else inprocess")
    r.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="worker processes of the local executor (default: one per core); each runs "
                        "cores // N torch threads ($SELFSTUDY_THREADS sets them; a study keeps the count "
                        "of its first run, since it changes the numbers)")
    r.add_argument("--data-root", type=Path, default=None,
                   help="where datasets are rendered and reused (default: $SELFSTUDY_DATA or ./data/datasets)")
    r.add_argument("--no-progress", action="store_true", help="no progress display")
    r.add_argument("--no-report", action="store_true", help="run the cells only")
    r.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="study this imported dataset folder (from `selfstudy data import`) instead of the "
                        "spec's datasets; the own preset needs it")
    r.set_defaults(func=run_run)

    s = sub.add_parser("status", help="how far a study got: cells done, running, failed",
                       description="Counts of a study's cells by status, what is running, what failed.",
                       epilog=_STATUS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("dir", type=Path, metavar="DIR", help="the study folder (or its results.sqlite)")
    s.add_argument("--failed", action="store_true", help="print every failed cell with its error")
    s.set_defaults(func=run_status)

    c = sub.add_parser("cells", help="list the cells a spec expands into (a dry run: nothing runs)",
                       description="Validate a spec and list its cells: pretraining cells (one per dataset, "
                                   "method, backbone and seed, shared) and downstream cells.",
                       epilog=_CELLS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("spec", metavar="SPEC_OR_PRESET")
    c.add_argument("overrides", nargs="*", default=[], metavar="key.sub=value")
    c.add_argument("--count", action="store_true",
                   help="print only the numbers of cells, the estimated GPU-hours and the finetune budgets "
                        "as samples seen per label count")
    c.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="an imported dataset folder instead of the spec's datasets (as for study run)")
    c.set_defaults(func=run_cells)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_run(args) -> int:
    from selfstudy.study.runner import run_study
    from selfstudy.study.spec import load_spec

    spec = load_spec(args.spec, args.overrides, data=args.data)
    spec.cells()  # a spec with no runnable cell is refused before its study folder is made
    # A study of an imported folder is named after it too, so two folders never share a study.
    study_dir = args.dir or Path(DEFAULT_ROOT) / (f"{spec.name}-{spec.datasets.factors[0]}" if args.data
                                                  else spec.name)
    if args.workers is not None and args.executor not in ("auto", "local"):
        raise UserError(f"--workers is for the local executor, not --executor {args.executor}")
    result = run_study(spec, study_dir, executor=args.executor, workers=args.workers,
                       progress=not args.no_progress, data_root=args.data_root, report=not args.no_report)
    print(f"{result.done}/{result.total} cells done in {study_dir} "
          f"({result.ran} run now, {result.seconds:.0f} s)", file=sys.stderr)
    return 0 if result.ok else 1


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: give an integer >= 1")
    return int(text)


def run_cells(args) -> int:
    from selfstudy.study.runner import describe
    from selfstudy.study.spec import load_spec

    plan = load_spec(args.spec, args.overrides, data=args.data).cells()
    if args.count:
        print(f"{len(plan)} cells: {len(plan.pretrain)} pretraining, {len(plan.downstream)} downstream"
              + (f", {len(plan.checks)} budget checks" if plan.checks else ""))
        from selfstudy.study.estimate import summary_line

        print(summary_line(plan))
        from selfstudy.study.autobudget import budget_lines

        for line in budget_lines(plan):
            print(line)
        for note in plan.notes:
            print(f"note: {note}")
    else:
        print(describe(plan))
    return 0


def run_status(args) -> int:
    from selfstudy.study.db import ResultsDB
    from selfstudy.study.runner import LOCK_NAME

    where = Path(args.dir)
    if not where.exists():
        raise UserError(f"no study at {where}: give the folder a `selfstudy study run` wrote (it holds results.sqlite)")
    folder = where if where.is_dir() else where.parent
    with ResultsDB.open(where) as db:
        spec = db.get_meta("spec") or {}
        plan = db.get_meta("plan")
        counts = db.counts(plan)
        rows = db.rows(status=None, kind=None, cell_ids=plan)
    active = _locked(folder / LOCK_NAME)
    print(f"study {spec.get('name', '?')} in {folder}" + ("  [a run is active]" if active else ""))
    total = sum(sum(v.values()) for v in counts.values())
    done = sum(v.get("done", 0) for v in counts.values())
    print(f"{done}/{total} cells done")
    for kind in ("pretrain", "downstream", "check"):
        if kind in counts:
            c = counts[kind]
            print(f"  {kind:10}  " + "  ".join(f"{k} {c[k]}" for k in ("done", "running", "pending", "failed")))
    for r in rows:
        if r["status"] == "running":
            if active:
                print(f"running: {_label(r)} (since {r['started_at']})")
            else:
                print(f"interrupted: {_label(r)} (its run stopped; the next run starts it again)")
    failed = [r for r in rows if r["status"] == "failed"]
    for r in (failed if args.failed else failed[:5]):
        err = (r["error"] or "").strip().splitlines()
        print(f"failed: {_label(r)}: {err[-1] if err else '?'}")
        if args.failed and len(err) > 1:
            print("    " + "\n    ".join(err[-12:]))
    if len(failed) > 5 and not args.failed:
        print(f"... {len(failed) - 5} more failed cells (--failed lists them all)")
    report = folder / "report.html"
    if report.is_file():
        print(f"report: {report}")
    return 0


def _label(row: dict) -> str:
    from selfstudy.study.spec import dataset_label

    head = f"{dataset_label(row['dataset'])} {row['method']} {row['backbone']} s{row['seed']}"
    if row["kind"] == "pretrain":
        return f"pretrain {head}"
    return f"{head} {row['task']} {row['protocol']} n={row['n_labels']}"


def _locked(path: Path) -> bool:
    """Whether a run holds the study's lock right now."""
    if not path.is_file():
        return False
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
