"""``selfstudy utility RESULTS.csv``: label savings of any table of results, run anywhere."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from selfstudy.errors import UserError

REQUIRED = ("arm", "n", "seed", "score")

_EPILOG = """The CSV has one row per run: columns arm, n (labels), seed, score, and optionally task.
Runs with the same seed are paired across arms and label counts (same labeled subset, head
initialisation and batches). Example (results.csv):

  arm,n,seed,score
  scratch,100,0,0.31
  scratch,1000,0,0.52
  simclr,100,0,0.40
  ...

examples:
  selfstudy utility results.csv
  selfstudy utility results.csv --trivial 0.10 --json      # with the signal guard (chance = 10 %)
  selfstudy utility errors.csv --lower-is-better --baseline random-init
  selfstudy utility results.csv --utility powerlaw         # may extrapolate past the largest n

--json prints one object: {"baseline", "utility", "higher_is_better", "trivial", "ci", "points": [...]},
each point {task, arm, n, kind, value, ci_low, ci_high, delta, delta_ci_low, delta_ci_high, flags,
reason}; kind is value, lower, upper, extrapolated or not_measurable; null where there is no number."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "utility", help="how many labels an arm saves over a baseline, from a CSV of results",
        description="Utility U(n) = n_baseline/n - 1 and the same-n difference Δ of every arm against the "
                    "baseline arm, with paired intervals over seeds, from a CSV of results.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path, metavar="RESULTS.csv", help="columns arm, n, seed, score (optional task)")
    p.add_argument("--baseline", default="scratch", metavar="NAME", help="the baseline arm (default: scratch)")
    p.add_argument("--lower-is-better", action="store_true", help="the score is an error (lower is better)")
    p.add_argument("--trivial", type=float, default=None, metavar="SCORE",
                   help="the task's trivial baseline (e.g. the majority-class rate): enables the signal guard")
    p.add_argument("--utility", choices=("isotonic", "paper", "powerlaw"), default="isotonic",
                   help="how the baseline curve is read (default: isotonic fit in log labels)")
    p.add_argument("--bootstrap", type=int, default=1000, help="paired resamples over seeds (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def read_results(path: Path) -> dict:
    """``{task: {arm: {n: {seed: score}}}}`` from the CSV, validated (UserError naming the problem)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no results file at {path}: give a CSV with columns {', '.join(REQUIRED)}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise UserError(f"{path} has no column {', '.join(missing)}: the columns must include "
                                f"{', '.join(REQUIRED)} (optional: task); found {', '.join(header) or 'none'}")
            out: dict = {}
            for line, raw in enumerate(reader, start=2):
                row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
                try:
                    score = float(row["score"])
                except ValueError:
                    score = math.nan
                if not math.isfinite(score):
                    raise UserError(f"{path} line {line}: score {row['score']!r} is not a finite number")
                try:
                    n = float(row["n"])
                    if not n.is_integer() or n <= 0:
                        raise ValueError
                except ValueError:
                    raise UserError(f"{path} line {line}: n {row['n']!r} is not a positive whole number of "
                                    "labels") from None
                if not row["arm"]:
                    raise UserError(f"{path} line {line}: the arm is empty")
                seeds = out.setdefault(row.get("task") or "", {}).setdefault(row["arm"], {}).setdefault(int(n), {})
                if row["seed"] in seeds:
                    raise UserError(f"{path} line {line}: arm {row['arm']!r} has seed {row['seed']!r} at n={int(n)} "
                                    "twice: give one score per (task, arm, n, seed)")
                seeds[row["seed"]] = score
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a UTF-8 text CSV") from None
    except csv.Error as e:
        raise UserError(f"{path} is not a readable CSV: {e}") from None
    if not out:
        raise UserError(f"{path} has no rows: give one row per run ({', '.join(REQUIRED)})")
    return out


def compute(results: dict, baseline: str = "scratch", higher_is_better: bool = True, trivial: float | None = None,
            method: str = "isotonic", bootstrap: int = 1000, seed: int = 0) -> list[dict]:
    """Point records (:data:`selfstudy.study.analysis.POINT_KEYS` first) of every arm against the
    baseline, per task."""
    from selfstudy.study.analysis import point_record
    from selfstudy.study.utility import utility_curve

    points = []
    for task, arms in sorted(results.items()):
        where = f" for task {task!r}" if task else ""
        if baseline not in arms:
            raise UserError(f"no baseline arm {baseline!r}{where}: the arms are {', '.join(sorted(arms))} "
                            "(choose one with --baseline NAME)")
        if len(arms[baseline]) < 2:
            raise UserError(f"the baseline arm {baseline!r}{where} has results at {len(arms[baseline])} label "
                            "count(s): utility needs it at two or more")
        others = sorted(a for a in arms if a != baseline)
        if not others:
            raise UserError(f"only the baseline arm {baseline!r}{where}: give results of another arm to compare")
        for arm in others:
            for p in utility_curve(arms[baseline], arms[arm], higher_is_better, method=method, bootstrap=bootstrap,
                                   seed=seed, trivial=trivial):
                points.append(point_record(p, task or None, arm))
    return points


def run(args) -> int:
    if args.bootstrap < 0:
        raise UserError(f"--bootstrap must be a whole number >= 0, got {args.bootstrap}")
    if args.trivial is not None and not math.isfinite(args.trivial):
        raise UserError(f"--trivial must be a finite score, got {args.trivial}")
    results = read_results(args.results)
    points = compute(results, args.baseline, not args.lower_is_better, args.trivial, args.utility, args.bootstrap,
                     args.seed)
    if args.json:
        from selfstudy.study.analysis import POINT_KEYS

        obj = {"baseline": args.baseline, "utility": args.utility, "higher_is_better": not args.lower_is_better,
               "trivial": args.trivial, "ci": 0.95, "bootstrap": args.bootstrap,
               "points": [{k: p[k] for k in POINT_KEYS} | {"text": p["text"], "n_seeds": p["n_seeds"],
                                                           "backtest_error": p["backtest_error"]}
                          for p in points]}
        json.dump(obj, sys.stdout, indent=1, allow_nan=False)
        sys.stdout.write("\n")
        return 0
    print(_table(points, args))
    return 0


def _table(points: list[dict], args) -> str:
    def fmt(x):
        return "–" if x is None else f"{x:+.4g}"

    rows = [["task", "arm", "n", "kind", "U", "Δ", "Δ interval", "flags / reason"]]
    for p in points:
        di = "–" if p["delta_ci_low"] is None else f"[{fmt(p['delta_ci_low'])}, {fmt(p['delta_ci_high'])}]"
        why = ", ".join(p["flags"]) + ("; " if p["flags"] and (p["reason"] or p["note"]) else "") + \
            (p["reason"] or p["note"] or "")
        rows.append([p["task"] or "", p["arm"], str(p["n"]), p["kind"], p["text"], fmt(p["delta"]), di, why])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    head = (f"utility U(n) = n_{args.baseline}/n - 1 against {args.baseline!r} ({args.utility}); 95 % t-intervals "
            "over paired seeds (none with one seed); Δ = arm minus baseline at the same n"
            + ("" if args.trivial is None else f"; trivial baseline {args.trivial:g}"))
    return "\n".join([head] + lines)
