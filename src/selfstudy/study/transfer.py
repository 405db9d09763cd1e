"""The transfer matrix: utility by pretraining dataset (rows) and finetuning dataset (columns).

A pure function over the analysis's utility points, for the report to render. A point is a mapping
with ``dataset`` (finetuned on, factor bits), ``pretrained_on`` (factor bits; None or absent: the
same dataset), ``method``, ``backbone``, ``task``, ``n`` (label count), ``value`` (the utility) and
its interval ``ci_low``/``ci_high`` (None where there is none); any other keys are ignored.

:func:`transfer_matrix` gives one matrix per (method, backbone, task, label count); its diagonal is
the study without transfer (each dataset pretrained on itself). :func:`render_markdown` writes one as
a table of ``value [low, high]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from selfstudy.errors import UserError
from selfstudy.factors import Factors

__all__ = ["TransferMatrix", "transfer_matrices", "transfer_matrix", "render_markdown"]


@dataclass(frozen=True)
class TransferMatrix:
    """Utilities of one (method, backbone, task, n): ``cells[(pretrained_on, finetuned_on)]`` is
    ``(value, ci_low, ci_high)``; ``rows``/``cols`` list the datasets (factor bits) in order."""

    method: str
    backbone: str
    task: str
    n: int
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    cells: Mapping[tuple[str, str], tuple[float, float | None, float | None]] = field(default_factory=dict)

    def get(self, pretrained_on: str, finetuned_on: str):
        """``(value, ci_low, ci_high)`` or None where the pair was not run."""
        return self.cells.get((pretrained_on, finetuned_on))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "backbone": self.backbone, "task": self.task, "n": self.n,
                "rows": list(self.rows), "cols": list(self.cols),
                "cells": [{"pretrained_on": r, "finetuned_on": c, "value": v, "ci_low": lo, "ci_high": hi}
                          for (r, c), (v, lo, hi) in sorted(self.cells.items())]}


def _finite(v) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def transfer_matrices(points: Iterable[Mapping[str, Any]]) -> list[TransferMatrix]:
    """Every matrix the points hold, ordered by method, backbone, task, label count. A pair given twice
    for the same (method, backbone, task, n) is an error (one line naming it)."""
    groups: dict[tuple, dict] = {}
    for p in points:
        try:
            f, m, b, t, n = str(p["dataset"]), str(p["method"]), str(p["backbone"]), str(p["task"]), int(p["n"])
        except KeyError as e:
            raise UserError(f"a utility point needs dataset, method, backbone, task and n; {e.args[0]!r} is "
                            f"missing from {dict(p)!r}") from None
        src = str(p.get("pretrained_on") or f)
        cells = groups.setdefault((m, b, t, n), {})
        if (src, f) in cells:
            raise UserError(f"two utility points for {m} {b} {t} n={n} pretrained on {src} and finetuned on "
                            f"{f}: give one per pair")
        value = _finite(p.get("value"))
        cells[(src, f)] = (float("nan") if value is None else value, _finite(p.get("ci_low")),
                           _finite(p.get("ci_high")))
    out = []
    for (m, b, t, n), cells in sorted(groups.items()):
        rows = tuple(sorted({r for r, _ in cells}))
        cols = tuple(sorted({c for _, c in cells}))
        out.append(TransferMatrix(m, b, t, n, rows, cols, dict(cells)))
    return out


def transfer_matrix(points: Iterable[Mapping[str, Any]], *, method: str, backbone: str, task: str,
                    n: int) -> TransferMatrix:
    """The matrix of one (method, backbone, task, label count); UserError if the points hold none."""
    for mat in transfer_matrices(points):
        if (mat.method, mat.backbone, mat.task, mat.n) == (method, backbone, task, int(n)):
            return mat
    raise UserError(f"no utility points for {method} {backbone} {task} n={n}")


def _name(bits: str) -> str:
    try:
        return Factors.parse(bits).letters
    except UserError:
        return bits


def _fmt(cell, digits: int) -> str:
    if cell is None:
        return "–"
    v, lo, hi = cell
    if not math.isfinite(v):
        return "n/m"
    s = f"{v:+.{digits}f}"
    if lo is not None and hi is not None:
        s += f" [{lo:+.{digits}f}, {hi:+.{digits}f}]"
    return s


def render_markdown(mat: TransferMatrix, digits: int = 2) -> str:
    """A markdown table: one row per pretraining dataset, one column per finetuning dataset, each cell
    ``utility [ci_low, ci_high]`` (``–``: pair not run; ``n/m``: not measurable)."""
    head = (f"Utility of {mat.method} ({mat.backbone}, {mat.task}, n={mat.n}): rows pretrained on, "
            f"columns finetuned on")
    lines = [head, "", "| pretrained on \\ finetuned on | " + " | ".join(_name(c) for c in mat.cols) + " |",
             "|---|" + "---|" * len(mat.cols)]
    for r in mat.rows:
        lines.append(f"| {_name(r)} | " + " | ".join(_fmt(mat.get(r, c), digits) for c in mat.cols) + " |")
    return "\n".join(lines)


# --- what the analysis calls ----------------------------------------------------------------------

#: Between a method and the dataset it was pretrained on in an arm's name: ``rotation@0000``.
SEP = "@"


def arm_name(row: Mapping[str, Any]) -> str:
    """The analysis arm of a study row: its method, or ``method@bits`` when it was pretrained on
    another dataset than it was finetuned on (so each pretraining dataset is an arm of its own)."""
    method, src = str(row["method"]), row.get("pretrained_on")
    return method if not src or str(src) == str(row.get("dataset")) else f"{method}{SEP}{src}"


def split_arm(name: str) -> tuple[str, str | None]:
    """``(method, pretrained_on or None)`` of an arm name :func:`arm_name` gave."""
    method, _, src = str(name).partition(SEP)
    return method, (src or None)


def baseline_arm(arm: str, arms: Iterable[str]) -> str:
    """The scratch arm an arm's utility is computed against: ``scratch-<method>`` (the method's own
    architecture from scratch, e.g. ``scratch-cmc``) when the study ran it, else ``scratch``."""
    own = f"scratch-{split_arm(arm)[0]}"
    return own if own in set(arms) else "scratch"


def points_from_records(records: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Utility points for :func:`transfer_matrices` from the analysis's summary records
    (``analysis.summary_rows``: dataset, backbone, task, method = the arm name, n, value, ci_low,
    ci_high)."""
    out = []
    for r in records:
        method, src = split_arm(r["method"])
        out.append({"dataset": r["dataset"], "pretrained_on": src, "method": method, "backbone": r["backbone"],
                    "task": r["task"], "n": r["n"], "value": r.get("value"), "ci_low": r.get("ci_low"),
                    "ci_high": r.get("ci_high")})
    return out


def transfer_html(records: Iterable[Mapping[str, Any]]) -> str:
    """The report's transfer section: one table per (method, backbone, task, n) that has a transferred
    arm; "" when the study did not transfer."""
    import html

    records = list(records)
    if not any(split_arm(r["method"])[1] for r in records):
        return ""
    moved = {(split_arm(r["method"])[0], r["backbone"], r["task"]) for r in records if split_arm(r["method"])[1]}
    out = ["<h2>Transfer</h2><p>Utility of each method by the dataset it was pretrained on (rows) and the "
           "dataset it was finetuned on (columns), against scratch on the finetuning dataset, with its "
           "interval; the diagonal is pretraining on the same data. –: pair not run; n/m: not "
           "measurable.</p>"]
    for mat in transfer_matrices(points_from_records(records)):
        if (mat.method, mat.backbone, mat.task) not in moved:
            continue
        text = render_markdown(mat).splitlines()
        out.append(f"<h3>{html.escape(text[0])}</h3><table><tr><th>pretrained on \\ finetuned on</th>"
                   + "".join(f"<th>{html.escape(_name(c))}</th>" for c in mat.cols) + "</tr>")
        for r in mat.rows:
            out.append(f"<tr><td class='l'>{html.escape(_name(r))}</td>"
                       + "".join(f"<td>{html.escape(_fmt(mat.get(r, c), 2))}</td>" for c in mat.cols) + "</tr>")
        out.append("</table>")
    return "\n".join(out)
