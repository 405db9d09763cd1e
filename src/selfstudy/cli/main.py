"""The ``selfstudy`` command. Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a ``run(args) -> int`` function.
Heavy imports (torch, moderngl) happen inside ``run`` so that ``--help`` stays instant.

Any :class:`~selfstudy.errors.UserError` becomes one line on stderr and exit status 2, and so does a bad
argument (:class:`Parser`, the class of every subcommand's parser). Output into a pipe whose reader
went away (``| head``) ends the command quietly with status 141 (:func:`entry`).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import sys
import typing

from selfstudy import __version__
from selfstudy.errors import UserError

#: Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS = ("render", "data", "pretrain", "finetune", "probe", "study", "report", "utility", "bench")


#: What an argument of each ``type=`` allows, for the one-line error of a value that does not convert.
_TYPE_WORDS = {"int": "a whole number, e.g. 0 or 100", "float": "a number, e.g. 0.15 or 1e-3",
               "Path": "a path"}
_INVALID = re.compile(r"^argument (?P<arg>.+?): invalid (?P<type>\w+) value: (?P<value>.*)$")
_UNRECOGNIZED = re.compile(r"^unrecognized arguments: (?P<args>.*)$")


def positive_number(text: str) -> float:
    """An argparse ``type``: a finite number > 0 (seconds, fractions)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; it must be a number > 0, e.g. 600")
    return value


class Parser(argparse.ArgumentParser):
    """The parser of ``selfstudy`` and of every subcommand (``add_subparsers`` makes its sub-parsers of
    the parser's own class): a bad argument is one line on stderr that names the argument and what it
    allows, and exit status 2, like every other error; no usage block."""

    def parse_known_args(self, args=None, namespace=None):
        ns, extras = super().parse_known_args(args, namespace)
        if extras and not hasattr(ns, "_extras_parser"):
            ns._extras_parser = self  # the innermost parser that saw them: its options suggest a fix
        return ns, extras

    def parse_args(self, args=None, namespace=None):
        ns, extras = self.parse_known_args(args, namespace)
        owner = ns.__dict__.pop("_extras_parser", self)
        if extras:
            owner.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {self._explain(message)} (see {self.prog} --help)\n")

    def _explain(self, message: str) -> str:
        m = _INVALID.match(message)
        if m:
            allowed = _TYPE_WORDS.get(m["type"], f"a {m['type']}")
            return f"argument {m['arg']}: {m['value']} is not allowed; it must be {allowed}"
        m = _UNRECOGNIZED.match(message)
        if m:
            known = [o for a in self._actions for o in a.option_strings]
            first = m["args"].split()[0]
            near = difflib.get_close_matches(first.split("=")[0], known, n=1)
            hint = f" (did you mean {near[0]}?)" if near and first.startswith("-") else ""
            return f"unrecognized arguments: {m['args']}{hint}"
        return message


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="selfstudy",
        description="Measure how useful self-supervised pretraining is: render data, pretrain, finetune, "
                    "run whole studies and report the labels saved.",
        epilog="example:\n  selfstudy study run quick          # the demo study, a few minutes on a CPU\n"
               "  selfstudy render --factors TCVL --n 1000 --preview",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"selfstudy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:  # a subcommand that does not import is a broken install: it raises
        importlib.import_module(f"selfstudy.cli.{name}").register(sub)
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


#: The exit status when the reader of stdout goes away early (``selfstudy study cells quick | head -3``):
#: 128 + SIGPIPE (13), what the shell reports for cat, seq, yes, grep and git, which are killed by
#: SIGPIPE there, so that a ``set -o pipefail`` script sees selfstudy as it sees them.
EXIT_BROKEN_PIPE = 141


def entry() -> None:
    """The ``selfstudy`` console script: :func:`main`, and a quiet exit (no traceback, status
    :data:`EXIT_BROKEN_PIPE`) for every subcommand when stdout is closed before all was written."""
    try:
        try:
            code = main()
        except SystemExit as e:  # argparse's --help, --version and errors exit from inside parse_args
            code = e.code
        sys.stdout.flush()  # the last buffered lines: a closed pipe raises here, not at interpreter exit
    except BrokenPipeError:
        code = _stdout_closed()
    sys.exit(code)


def _stdout_closed() -> int:
    """Python's recipe (the signal module's "Note on SIGPIPE"): point stdout at devnull, so that the
    flush of what is still buffered at exit does not raise again, and exit with the SIGPIPE status."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no stdout file descriptor to replace
        pass
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    entry()
