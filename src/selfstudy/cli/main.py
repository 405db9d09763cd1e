"""The ``selfstudy`` command. Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a ``run(args) -> int`` function.
Heavy imports (torch, moderngl) happen inside ``run`` so that ``--help`` stays instant.

Any :class:`~selfstudy.errors.UserError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from selfstudy import __version__
from selfstudy.errors import UserError

#: Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS = ("render", "data", "pretrain", "finetune", "probe", "study", "report", "bench")


class _Parser(argparse.ArgumentParser):
    """argparse exits with status 2 on bad arguments already; keep its one-line message."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="selfstudy",
        description="Measure how useful self-supervised pretraining is: render data, pretrain, finetune, "
                    "run whole studies and report the labels saved.",
        epilog="example:\n  selfstudy study run quick          # the demo study, a few minutes on a CPU\n"
               "  selfstudy render --factors TCVL --n 1000 --preview",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"selfstudy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"selfstudy.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"selfstudy.cli.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"selfstudy: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("selfstudy: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
