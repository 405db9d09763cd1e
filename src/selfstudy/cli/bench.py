"""``selfstudy bench``: run the benchmark scripts in ``benchmarks/`` and print their JSON lines."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from selfstudy.cli.main import positive_number

EPILOG = """\
examples:
  selfstudy bench                       run every benchmark, one JSON line each
  selfstudy bench train_throughput      just that one (the file benchmarks/train_throughput.py)
  selfstudy bench --list
  selfstudy bench train_throughput --args="--bf16 --repeats 9"     arguments for the script(s)

Benchmarks compare against a reference measured in the same run (a ratio), because absolute times on a
shared machine drift. Set SELFSTUDY_BENCHMARKS to use another folder of scripts.
"""


def benchmarks_dir() -> Path:
    """``$SELFSTUDY_BENCHMARKS``, else ``benchmarks/`` of the source checkout this package runs from."""
    env = os.environ.get("SELFSTUDY_BENCHMARKS")
    if env:
        return Path(env)
    import selfstudy

    return Path(selfstudy.__file__).resolve().parents[2] / "benchmarks"


def available(folder: Path) -> dict[str, Path]:
    """Benchmark name -> script, for every ``*.py`` in ``folder`` not starting with ``_``."""
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.py")) if not p.name.startswith("_")}


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="run benchmarks (one JSON line each)",
                              description="Run the scripts in benchmarks/ and print the JSON line each "
                                          "prints.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--args", default="", metavar="STRING",
                   help="arguments passed to each script, as one quoted string")
    p.add_argument("--timeout", type=positive_number, default=1800, help="seconds per benchmark (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from selfstudy.errors import UserError

    names, script_args = list(args.names), shlex.split(args.args)
    folder = benchmarks_dir()
    found = available(folder)
    if not found:
        raise UserError(f"no benchmarks found in {folder}; run from a source checkout or set "
                        f"SELFSTUDY_BENCHMARKS")
    if args.list:
        print("\n".join(found))
        return 0
    unknown = [n for n in names if n not in found]
    if unknown:
        raise UserError(f"unknown benchmark {unknown[0]!r}; available: {', '.join(found)}")
    status = 0
    for name in names or list(found):
        try:
            proc = subprocess.run([sys.executable, str(found[name]), *script_args], capture_output=True,
                                  text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(json.dumps({"benchmark": name, "error": f"timed out after {args.timeout:.0f} s"}))
            status = 1
            continue
        lines = [line for line in proc.stdout.splitlines() if _is_json(line)]
        for line in lines:
            print(line, flush=True)
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            print(json.dumps({"benchmark": name, "error": f"exit {proc.returncode}: {tail}"}), flush=True)
            status = 1
    return status


def _is_json(line: str) -> bool:
    line = line.strip()
    if not line.startswith("{"):
        return False
    try:
        json.loads(line)
    except ValueError:
        return False
    return True
