"""The study report: one self-contained HTML page, its figures as PNG files, and every cell as CSV.

:func:`build_report` turns the finished cells of a study (the rows the results database returns) into

- ``<name>.html``: summary first (utility per method, task, dataset, backbone and label count), then
  accuracy vs labels, utility vs labels, utility by data factor, linear probe vs finetuning, and what
  was run, with every cell that was still improving when its budget ran out listed by name.
  Figures are embedded as base64 PNG and the CSS is inline, so the one file can be mailed around.
- one PNG per figure and ``cells.csv`` (one line per row) beside it.

:func:`summary_table_text` gives the utility table as plain text for a terminal.

Both work with any subset of a study (only scratch rows, one seed, one task, no linear probes): a
section that has nothing to show says why instead.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import platform
import re
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from selfstudy import __version__
from selfstudy.core.constants import BUDGET_CHECK_TOLERANCE, SCRATCH
from selfstudy.core.io import atomic_write_bytes, atomic_write_text
from selfstudy.errors import UserError
from selfstudy.factors import LETTERS, NAMES, Factors
from selfstudy.study.utility import METHODS, UtilityPoint, rank_correlation, utility_curve

#: The columns a row is expected to have, in the CSV's order; other keys follow, sorted.
ROW_KEYS = ("cell_id", "dataset", "method", "backbone", "task", "protocol", "n_labels", "seed", "status",
            "metric", "higher_is_better", "test", "val", "test_last", "still_improving", "steps",
            "seconds", "metrics", "config")
_REQUIRED = ("dataset", "method", "backbone", "task", "protocol", "n_labels", "test")
_LINESTYLE = {"finetune": "-", "linear": "--", "knn": ":"}
_FLAG = "†"
#: Fewest points a rank correlation is reported on.
MIN_CORR_POINTS = 3


# --------------------------------------------------------------------------------------- analysis


@dataclass
class Arm:
    """One curve of a panel: a method under a protocol. ``values[n]`` holds one number per seed."""

    method: str
    protocol: str
    values: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    improving: dict[int, list[dict]] = field(default_factory=lambda: defaultdict(list))

    def mean(self, n: int) -> float:
        return float(np.mean(self.values[n]))


@dataclass
class Group:
    """Everything measured on one (dataset, backbone, task)."""

    dataset: str
    backbone: str
    task: str
    metric: str
    higher_is_better: bool
    arms: dict[tuple[str, str], Arm] = field(default_factory=dict)
    utility: dict[str, list[UtilityPoint]] = field(default_factory=dict)
    flags: dict[tuple[str, int], list[dict]] = field(default_factory=dict)

    @property
    def scratch(self) -> Arm | None:
        return self.arms.get((SCRATCH, "finetune"))


@dataclass
class Analysis:
    groups: list[Group]
    skipped: list[tuple[dict, str]]
    improving: list[dict]
    methods: list[str]
    utility_method: str
    bootstrap: int
    ci: float


def analyse(rows: Iterable[dict], utility_method: str = "isotonic", bootstrap: int = 1000, seed: int = 0,
            ci: float = 0.95) -> Analysis:
    """Group finished rows by (dataset, backbone, task) and compute each finetuned method's utility.

    Rows that are not finished, lack a key the analysis needs, or have a non-finite result are set
    aside in ``Analysis.skipped`` with the reason, never silently dropped.
    """
    if utility_method not in METHODS:
        raise UserError(f"unknown utility method {utility_method!r}: allowed are {', '.join(METHODS)}")
    groups: dict[tuple[str, str, str], Group] = {}
    skipped: list[tuple[dict, str]] = []
    improving: list[dict] = []
    for row in rows:
        if not isinstance(row, Mapping):
            raise UserError(f"a study row must be a mapping of column names to values, got {type(row).__name__}")
        reason = _unusable(row)
        if reason:
            skipped.append((row, reason))
            continue
        key = (str(row["dataset"]), str(row["backbone"]), str(row["task"]))
        metric = str(row.get("metric") or "metric")
        hib = bool(row.get("higher_is_better", True))
        g = groups.setdefault(key, Group(*key, metric=metric, higher_is_better=hib))
        if (metric, hib) != (g.metric, g.higher_is_better):
            skipped.append((row, f"its metric {metric!r} differs from the {g.metric!r} of the other "
                                 f"cells of {'/'.join(key)}"))
            continue
        arm_key = (str(row["method"]), str(row["protocol"]))
        arm = g.arms.setdefault(arm_key, Arm(*arm_key))
        n = int(row["n_labels"])
        arm.values[n].append(float(row["test"]))
        if row.get("still_improving") or row.get("under_budget"):
            arm.improving[n].append(row)
            improving.append(row)

    ordered = [groups[k] for k in sorted(groups)]
    for g in ordered:
        scratch = g.scratch
        if scratch is None:
            continue
        for (method, protocol), arm in sorted(g.arms.items()):
            if method == SCRATCH or protocol != "finetune":
                continue
            curve_seed = (seed * 1_000_003 + zlib.crc32(f"{g.dataset}|{g.backbone}|{g.task}|{method}".encode()))
            points = utility_curve(dict(scratch.values), dict(arm.values), g.higher_is_better,
                                   method=utility_method, bootstrap=bootstrap, seed=curve_seed % 2**63, ci=ci)
            g.utility[method] = points
            for p in points:
                # A utility inherits doubt from the pretrained cells at n and from the scratch cells
                # its n_s was read from.
                cells = list(arm.improving.get(p.n, []))
                for N in p.scratch_used:
                    cells += scratch.improving.get(N, [])
                if cells:
                    g.flags[(method, p.n)] = cells
    methods = sorted({m for g in ordered for (m, _) in g.arms if m != SCRATCH})
    return Analysis(ordered, skipped, improving, methods, utility_method, bootstrap, ci)


def apply_budget_checks(rows: Iterable[dict], checks: Iterable[dict],
                        tolerance: float = BUDGET_CHECK_TOLERANCE) -> tuple[list[dict], list[dict]]:
    """Pair every finished budget-check row (a finetune cell re-run at ``factor`` times its budget;
    ``config["check_of"]`` names the cell) with the row it re-ran, and mark that row ``under_budget``
    when the larger budget raised its validation metric by more than ``tolerance`` (in the metric's
    units and direction: a drop of an error counts as a gain). Such a row is flagged like a still
    improving one (:func:`analyse`): its number is not a converged one.

    Returns ``(rows, table)``: copies of ``rows`` (``under_budget`` True or False on every row that was
    checked, absent on the others),
    and one dict per check: dataset, backbone, task, method, protocol, n_labels, seed, metric,
    higher_is_better, factor, val, val_check, test, test_check, gain (validation, positive = better
    with more budget), steps, steps_check, under_budget. Checks whose cell is not among ``rows`` are
    left out."""
    rows = [dict(r) for r in rows]
    by_id = {r.get("cell_id"): r for r in rows}
    table = []
    for c in checks:
        cfg = c.get("config") or {}
        orig = by_id.get(cfg.get("check_of"))
        if orig is None or not (_finite(orig.get("val")) and _finite(c.get("val"))):
            continue
        sign = 1.0 if bool(orig.get("higher_is_better", True)) else -1.0
        gain = sign * (float(c["val"]) - float(orig["val"]))
        under = gain > float(tolerance)
        orig["under_budget"] = bool(orig.get("under_budget")) or under
        table.append({k: orig.get(k) for k in ("dataset", "backbone", "task", "method", "protocol",
                                               "n_labels", "seed", "metric", "higher_is_better")}
                     | {"factor": cfg.get("budget_factor"), "val": orig.get("val"), "val_check": c.get("val"),
                        "test": orig.get("test"), "test_check": c.get("test"), "gain": gain,
                        "steps": orig.get("steps"), "steps_check": c.get("steps"), "under_budget": under,
                        "tolerance": float(tolerance)})
    table.sort(key=lambda t: (str(t["dataset"]), str(t["backbone"]), str(t["task"]), str(t["method"]),
                              t["n_labels"] or 0, t["seed"] or 0))
    return rows, table


def budget_check_text(table: list[dict]) -> list[str]:
    """Plain-text lines on the budget checks (none when there were none)."""
    if not table:
        return []
    bad = [t for t in table if t["under_budget"]]
    tol = table[0]["tolerance"]
    factors = sorted({t["factor"] for t in table if t["factor"]})
    fx = "/".join(f"x{f:g}" for f in factors) or "larger"
    lines = [f"budget check ({fx} budget): {len(bad)} of {len(table)} re-run cell(s) gained more than {tol:g} "
             f"in validation {table[0]['metric']}" + (f" (flagged {_FLAG}):" if bad else ": every checked cell "
                                                       "had converged")]
    for t in bad[:12]:
        lines.append(f"  {_dataset_name(t['dataset'])} {t['backbone']} {t['task']} {t['method']} "
                     f"n={t['n_labels']} s{t['seed']}: val {t['val']:.4g} -> {t['val_check']:.4g}, "
                     f"test {t['test']:.4g} -> {t['test_check']:.4g}")
    if len(bad) > 12:
        lines.append(f"  ... and {len(bad) - 12} more (see the report)")
    return lines


def summary_rows(analysis: Analysis) -> list[dict]:
    """One flat dict per (dataset, backbone, task, method, n) utility point."""
    out = []
    for g in analysis.groups:
        for method, points in sorted(g.utility.items()):
            for p in points:
                flagged = (method, p.n) in g.flags
                out.append({"dataset": g.dataset, "backbone": g.backbone, "task": g.task, "metric": g.metric,
                            "method": method, "n": p.n, "text": str(p) + (f" {_FLAG}" if flagged else ""),
                            "utility": p.value, "kind": p.kind, "ci_low": p.ci_low, "ci_high": p.ci_high,
                            "n_scratch_equiv": p.n_scratch_equiv, "accuracy": p.accuracy,
                            "frac_bound": p.frac_lower + p.frac_upper, "still_improving": flagged})
    return out


def summary_table_text(rows: list[dict], *, utility_method: str = "isotonic", bootstrap: int = 1000,
                       seed: int = 0, checks: list[dict] | None = None) -> str:
    """A plain-text table of utility per dataset/backbone/task/method at each label count (``checks``:
    the table of :func:`apply_budget_checks`, summarised below it)."""
    analysis = analyse(rows, utility_method, bootstrap, seed)
    summary = summary_rows(analysis)
    lines = []
    if not summary:
        lines.append("no utility: it needs scratch finetune cells and pretrained finetune cells of the same "
                     "dataset, backbone and task. Mean primary metric per arm instead:")
        header = ["dataset", "backbone", "task", "method", "protocol"]
        ns = sorted({n for g in analysis.groups for a in g.arms.values() for n in a.values})
        table = [header + [f"n={n}" for n in ns]]
        for g in analysis.groups:
            for (m, p), arm in sorted(g.arms.items()):
                table.append([_dataset_name(g.dataset), g.backbone, g.task, m, p] +
                             [f"{arm.mean(n):.3f}" if n in arm.values else "" for n in ns])
        if len(table) == 1:
            return "no finished cells to summarise"
        return "\n".join(lines + _align(table) + budget_check_text(checks or []))
    ns = sorted({r["n"] for r in summary})
    header = ["dataset", "backbone", "task", "method"] + [f"n={n}" for n in ns]
    table = [header]
    keyed = defaultdict(dict)
    for r in summary:
        keyed[(r["dataset"], r["backbone"], r["task"], r["method"])][r["n"]] = r["text"]
    for (d, b, t, m), cells in keyed.items():
        table.append([_dataset_name(d), b, t, m] + [cells.get(n, "") for n in ns])
    lines.append(f"utility U(n) = n_scratch/n - 1 ({analysis.utility_method} scratch fit; "
                 f"[{analysis.ci:.0%} bootstrap interval over seeds]; ≥ / ≤ = bound outside the scratch range)")
    lines += _align(table)
    if analysis.improving:
        why = "whose validation was still improving when its budget ran out"
        if any(r.get("under_budget") for r in analysis.improving):
            why += " or that gained at a larger budget"
        lines.append(f"{_FLAG} uses a cell {why} "
                     f"({len(analysis.improving)} such cell{'s' if len(analysis.improving) != 1 else ''})")
    lines += budget_check_text(checks or [])
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- report


def build_report(rows: list[dict], out_html: Path, spec: dict | None = None, meta: dict | None = None, *,
                 utility_method: str = "isotonic", bootstrap: int = 1000, seed: int = 0,
                 ci: float = 0.95, checks: list[dict] | None = None) -> dict:
    """Write the HTML report, its PNG figures and ``cells.csv`` into ``out_html``'s folder.

    rows: the study's cells (keys in :data:`ROW_KEYS`); spec: the study spec, shown as run;
    meta: anything else worth recording (database path, device, ...), shown as a table;
    checks: the budget-check table of :func:`apply_budget_checks` (rows already marked by it).
    ``utility_method``, ``bootstrap``, ``seed`` and ``ci`` go to :func:`utility_curve`.
    Returns ``{"html": Path, "csv": Path, "figures": [Path], "summary": [dict], "correlations": [dict],
    "factors": [dict]}``.
    """
    out_html = Path(out_html)
    if out_html.is_dir():
        raise UserError(f"report path {out_html} is a folder: give a file name such as {out_html / 'report.html'}")
    rows = list(rows)
    folder = out_html.parent
    folder.mkdir(parents=True, exist_ok=True)
    analysis = analyse(rows, utility_method, bootstrap, seed, ci)
    colours = _colours(analysis.methods)

    figures: list[tuple[str, bytes, str]] = []  # (file name, png, caption)
    for (backbone, task), groups in _by_backbone_task(analysis.groups).items():
        figures.append((_fname("accuracy", backbone, task), _accuracy_figure(groups, colours),
                        f"{task} · {backbone}: {groups[0].metric} vs labels"))
    for (backbone, task), groups in _by_backbone_task(analysis.groups).items():
        with_utility = [g for g in groups if g.utility]
        if with_utility:
            figures.append((_fname("utility", backbone, task), _utility_figure(with_utility, colours),
                            f"{task} · {backbone}: utility vs labels"))
    factors = factor_table(analysis)
    if factors:
        figures.append(("factor_utility.png", _factor_figure(factors, colours),
                        "utility with each factor on minus off"))
    scatter = linear_vs_finetune(analysis)
    correlations = _correlations(scatter)
    if any(c["n"] >= MIN_CORR_POINTS for c in correlations):
        figures.append(("linear_vs_finetune.png", _scatter_figure(scatter, correlations, colours),
                        "linear probe vs finetuning"))

    fig_paths = []
    for name, png, _ in figures:
        path = folder / name
        atomic_write_bytes(path, png)
        fig_paths.append(path)
    csv_path = folder / "cells.csv"
    atomic_write_text(csv_path, cells_csv(rows))

    summary = summary_rows(analysis)
    page = _html_page(analysis, rows, figures, factors, scatter, correlations, spec, meta, checks or [])
    atomic_write_text(out_html, page)
    return {"html": out_html, "csv": csv_path, "figures": fig_paths, "summary": summary,
            "correlations": correlations, "factors": factors}


def cells_csv(rows: list[dict]) -> str:
    """Every row as one CSV line; nested values (metrics, config) as JSON, newlines in text as ``\\n``."""
    extra = sorted({k for r in rows for k in r} - set(ROW_KEYS))
    keys = list(ROW_KEYS) + extra
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(keys)
    for r in rows:
        writer.writerow([_csv_value(r.get(k)) for k in keys])
    return buf.getvalue()


def factor_table(analysis: Analysis) -> list[dict]:
    """Mean utility with each factor on vs off, at the smallest label count every dataset shares.

    One dict per (backbone, task, method) measured on at least two factor settings, with for each
    factor letter ``{"on": (mean, mark), "off": (mean, mark), "delta": float | None, ...}``; ``mark``
    is ``"≥"``/``"≤"`` when the mean includes bounds of one direction, ``"~"`` for both, else ``""``.
    """
    by_key: dict[tuple[str, str, str], dict[Factors, dict[int, UtilityPoint]]] = defaultdict(dict)
    for g in analysis.groups:
        try:
            f = Factors.parse(g.dataset)
        except UserError:
            continue  # not a factor-named dataset: nothing to compare it on
        for method, points in g.utility.items():
            by_key[(g.backbone, g.task, method)][f] = {p.n: p for p in points}
    out = []
    for (backbone, task, method), per_ds in sorted(by_key.items()):
        if len(per_ds) < 2:
            continue
        common = set.intersection(*(set(pts) for pts in per_ds.values()))
        if not common:
            continue
        n0 = min(common)
        entry = {"backbone": backbone, "task": task, "method": method, "n": n0,
                 "datasets": sorted(f.bits for f in per_ds), "factors": {}}
        for i, letter in enumerate(LETTERS):
            on = [pts[n0] for f, pts in per_ds.items() if f.as_tuple()[i]]
            off = [pts[n0] for f, pts in per_ds.items() if not f.as_tuple()[i]]
            if not on or not off:
                continue
            m_on, m_off = _bounded_mean(on), _bounded_mean(off)
            entry["factors"][letter] = {"on": m_on, "off": m_off, "delta": m_on[0] - m_off[0],
                                        "n_on": len(on), "n_off": len(off)}
        if entry["factors"]:
            out.append(entry)
    return out


def linear_vs_finetune(analysis: Analysis) -> list[dict]:
    """Paired points: a pretrained method's linear-probe and finetuned means at the same n and data."""
    points = []
    for g in analysis.groups:
        for (method, protocol), lin in sorted(g.arms.items()):
            fine = g.arms.get((method, "finetune"))
            if method == SCRATCH or protocol != "linear" or fine is None:
                continue
            util = {p.n: p for p in g.utility.get(method, [])}
            for n in sorted(set(lin.values) & set(fine.values)):
                points.append({"dataset": g.dataset, "backbone": g.backbone, "task": g.task, "metric": g.metric,
                               "method": method, "n": n, "linear": lin.mean(n), "finetune": fine.mean(n),
                               "utility": util.get(n)})
    return points


# ------------------------------------------------------------------------------------------ figures


def _new_figure(nrows: int, ncols: int, width: float = 4.2, height: float = 3.3):
    # The object API with an explicit Agg canvas: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # At least 8 inches wide so that the legend below a single panel still fits on one or two lines.
    fig = Figure(figsize=(max(width * ncols, 8.0), height * nrows + 0.9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    return fig, axes


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _grid(k: int) -> tuple[int, int]:
    ncols = min(k, 4)
    return math.ceil(k / ncols), ncols


def _log_x(ax, ns: Iterable[int]) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    ns = sorted(set(ns))
    ax.set_xscale("log")
    if ns:
        ax.xaxis.set_major_locator(FixedLocator(ns))
        ax.set_xticklabels([_short_n(n) for n in ns], fontsize=8)
        ax.set_xlim(ns[0] / 1.35, ns[-1] * 1.35)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("labels")
    ax.grid(alpha=0.3)


def _accuracy_figure(groups: list[Group], colours: dict[str, str]) -> bytes:
    from matplotlib.lines import Line2D

    fig, axes = _new_figure(*_grid(len(groups)))
    protocols = set()
    for ax, g in zip(axes, groups):
        all_ns = set()
        for (method, protocol), arm in sorted(g.arms.items(), key=lambda kv: (kv[0][0] != SCRATCH, kv[0])):
            protocols.add(protocol)
            ns = sorted(arm.values)
            all_ns |= set(ns)
            mean = np.array([arm.mean(n) for n in ns])
            std = np.array([np.std(arm.values[n]) for n in ns])
            c = colours[method]
            ax.plot(ns, mean, _LINESTYLE.get(protocol, "-."), color=c, lw=1.5)
            ax.fill_between(ns, mean - std, mean + std, color=c, alpha=0.12, lw=0)
            hollow = np.array([bool(arm.improving.get(n)) for n in ns])
            ax.plot(np.array(ns)[~hollow], mean[~hollow], "o", color=c, ms=5)
            ax.plot(np.array(ns)[hollow], mean[hollow], "o", mfc="white", mec=c, mew=1.5, ms=7)
        _log_x(ax, all_ns)
        ax.set_ylabel(g.metric + ("" if g.higher_is_better else " (lower is better)"))
        ax.set_title(_dataset_name(g.dataset), fontsize=10)
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    present = sorted({m for g in groups for (m, _) in g.arms}, key=lambda m: (m != SCRATCH, m))
    handles = [Line2D([], [], color=colours[m], lw=2, label=m) for m in present]
    handles += [Line2D([], [], color="grey", ls=_LINESTYLE.get(p, "-."), label=p) for p in sorted(protocols)]
    handles.append(Line2D([], [], ls="", marker="o", mfc="white", mec="grey", mew=1.5, ms=7,
                          label="hollow: a seed still improving at budget end"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), fontsize=8,
               frameon=False)
    return _png(fig)


def _utility_figure(groups: list[Group], colours: dict[str, str]) -> bytes:
    from matplotlib.lines import Line2D

    fig, axes = _new_figure(*_grid(len(groups)))
    for ax, g in zip(axes, groups):
        scratch_ns = sorted(g.scratch.values)
        n_min, n_max = scratch_ns[0], scratch_ns[-1]
        all_ns = sorted({p.n for pts in g.utility.values() for p in pts})
        ys = [0.0] + [y for pts in g.utility.values() for p in pts for y in (p.value, p.ci_low, p.ci_high)]
        lo, hi = min(ys), max(ys)
        pad = 0.12 * max(hi - lo, 1.0)
        ylim = (lo - pad, hi + pad)
        # Grey: where a utility cannot be measured, beyond what the scratch curve covers.
        xs = np.geomspace(all_ns[0] / 1.35, all_ns[-1] * 1.35, 200)
        ax.fill_between(xs, np.maximum(n_max / xs - 1, ylim[0]), ylim[1], color="0.88", lw=0, zorder=0)
        ax.fill_between(xs, ylim[0], np.minimum(n_min / xs - 1, ylim[1]), color="0.88", lw=0, zorder=0)
        ax.axhline(0.0, color="0.4", lw=0.8)
        methods = sorted(g.utility)
        for k, method in enumerate(methods):
            c = colours[method]
            shift = 1.05 ** (k - (len(methods) - 1) / 2)  # spread methods apart on the log axis
            pts = g.utility[method]
            vals = [p for p in pts if p.kind == "value"]
            if vals:
                x = np.array([p.n * shift for p in vals])
                y = np.array([p.value for p in vals])
                yerr = np.array([[p.value - p.ci_low for p in vals], [p.ci_high - p.value for p in vals]])
                ax.errorbar(x, y, yerr=np.maximum(yerr, 0), color=c, lw=1.2, capsize=3, ls="-", marker="")
                hollow = np.array([(method, p.n) in g.flags for p in vals])
                ax.plot(x[~hollow], y[~hollow], "o", color=c, ms=5)
                ax.plot(x[hollow], y[hollow], "o", mfc="white", mec=c, mew=1.5, ms=7)
            for p in pts:
                if p.kind == "value":
                    continue
                up = p.kind == "lower"
                x = p.n * shift
                flagged = (method, p.n) in g.flags
                ax.plot([x], [p.value], "^" if up else "v", color=c, ms=8, mfc="white" if flagged else c, mec=c)
                ax.annotate("", xy=(x, p.value), xytext=(0, 22 if up else -22), textcoords="offset points",
                            arrowprops=dict(arrowstyle="<|-", color=c, lw=1.3, shrinkA=0, shrinkB=5))
        ax.set_ylim(*ylim)
        _log_x(ax, all_ns)
        ax.set_ylabel("utility  n_scratch/n − 1")
        ax.set_title(_dataset_name(g.dataset), fontsize=10)
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    present = sorted({m for g in groups for m in g.utility})
    handles = [Line2D([], [], color=colours[m], marker="o", lw=1.5, label=m) for m in present]
    handles += [Line2D([], [], ls="", marker="^", color="grey", ms=8, label="lower bound (≥)"),
                Line2D([], [], ls="", marker="v", color="grey", ms=8, label="upper bound (≤)"),
                Line2D([], [], ls="", marker="s", color="0.88", ms=10, label="not measurable"),
                Line2D([], [], ls="", marker="o", mfc="white", mec="grey", mew=1.5, ms=7,
                       label="hollow: uses a still-improving cell")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=8,
               frameon=False)
    return _png(fig)


def _factor_figure(factors: list[dict], colours: dict[str, str]) -> bytes:
    from matplotlib.patches import Patch

    panels = defaultdict(list)
    for e in factors:
        panels[(e["backbone"], e["task"])].append(e)
    fig, axes = _new_figure(*_grid(len(panels)))
    for ax, ((backbone, task), entries) in zip(axes, sorted(panels.items())):
        width = 0.8 / len(entries)
        deltas = [0.0]
        for k, e in enumerate(entries):
            for i, letter in enumerate(LETTERS):
                f = e["factors"].get(letter)
                if f is None:
                    continue
                bounded = bool(f["on"][1] or f["off"][1])
                deltas.append(f["delta"])
                ax.bar(i - 0.4 + width * (k + 0.5), f["delta"], width, color=colours[e["method"]],
                       hatch="//" if bounded else None, edgecolor="0.3" if bounded else "white")
        # At least +-0.25 so that differences of rounding size do not fill the panel.
        span = max(0.25, 1.15 * max(abs(d) for d in deltas))
        ax.set_ylim(-span, span)
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_xticks(range(4), [f"{L}\n{NAMES[i]}" for i, L in enumerate(LETTERS)], fontsize=8)
        ax.set_ylabel("mean utility: on − off")
        ax.set_title(f"{task} · {backbone} · n={_short_n(entries[0]['n'])}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles = [Patch(color=colours[m], label=m) for m in sorted({e["method"] for e in factors})]
    handles.append(Patch(facecolor="white", edgecolor="0.3", hatch="//", label="mean includes bounds"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    return _png(fig)


def _scatter_figure(points: list[dict], correlations: list[dict], colours: dict[str, str]) -> bytes:
    tasks = [c["task"] for c in correlations if c["scope"] == "all" and c["n"] >= MIN_CORR_POINTS]
    tasks = list(dict.fromkeys(tasks))
    fig, axes = _new_figure(len(tasks), 2)
    markers = "osDP*Xhv<>"
    datasets = sorted({p["dataset"] for p in points})
    for row, task in enumerate(tasks):
        pts = [p for p in points if p["task"] == task]
        ax_a, ax_u = axes[2 * row], axes[2 * row + 1]
        for p in pts:
            c, m = colours[p["method"]], markers[datasets.index(p["dataset"]) % len(markers)]
            ax_a.plot(p["linear"], p["finetune"], m, color=c, ms=6, alpha=0.85)
            u = p["utility"]
            if u is not None:
                mk = {"value": m, "lower": "^", "upper": "v"}[u.kind]
                ax_u.plot(p["linear"], u.value, mk, color=c, ms=6, alpha=0.85,
                          mfc=c if u.kind == "value" else "white")
        by = {(c["scope"], c["against"]): c for c in correlations if c["task"] == task}
        metric = pts[0]["metric"]
        for ax, against, ylabel in ((ax_a, "finetune", f"finetuned {metric}"),
                                    (ax_u, "utility", "utility (bounds hollow, not correlated)")):
            c = by.get(("all", against))
            stats = (f"ρ={_fmt_corr(c['spearman'])}  τ={_fmt_corr(c['kendall'])}  (n={c['n']})"
                     if c and c["n"] >= MIN_CORR_POINTS else "too few points")
            ax.set_title(f"{task}: {stats}", fontsize=9)
            ax.set_xlabel(f"linear-probe {metric}")
            ax.set_ylabel(ylabel, fontsize=9)
            ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", color=colours[m], label=m)
               for m in sorted({p["method"] for p in points})]
    handles += [Line2D([], [], ls="", marker=markers[i % len(markers)], color="grey", label=_dataset_name(d))
                for i, d in enumerate(datasets)]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    return _png(fig)


# -------------------------------------------------------------------------------------------- HTML

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1180px;margin:2em auto;
padding:0 1em;color:#222}
h1{font-size:1.7em;margin-bottom:.1em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
h3{margin-bottom:.3em}.sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td.l,th.l{text-align:left}
td.pos{background:#eef7ee}td.neg{background:#fbeeee}td.bound{font-style:italic}tr.bad td{background:#fbeeee}
.note{background:#fff8e6;border-left:4px solid #f0b400;padding:.5em .9em;margin:1em 0}
.ok{background:#eef7ee;border-left:4px solid #4a4;padding:.5em .9em;margin:1em 0}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:13px}
pre{background:#f6f6f6;padding:.7em;overflow:auto;font-size:12px}details{margin:.8em 0}
sup{color:#b35c00;font-weight:bold}
"""


def _html_page(analysis: Analysis, rows, figures, factors, scatter, correlations, spec, meta,
               checks=()) -> str:
    e = html.escape
    name = (spec or {}).get("name") if isinstance(spec, dict) else None
    title = f"selfstudy report{': ' + str(name) if name else ''}"
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    groups = analysis.groups
    datasets = sorted({g.dataset for g in groups})
    arms = sorted({a for g in groups for a in g.arms})
    ns = sorted({n for g in groups for a in g.arms.values() for n in a.values})
    seeds = sorted({r.get("seed") for r in rows if r.get("seed") is not None}, key=str)
    figs = {n: (png, cap) for n, png, cap in figures}
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>"
           f"<style>{_CSS}</style></head><body>",
           f"<h1>{e(title)}</h1><p class='sub'>generated {e(now)} · selfstudy {e(__version__)}</p>"]

    # ---- what this is, in one paragraph
    n_used = len(rows) - len(analysis.skipped)
    out.append("<h2>Summary</h2><p>"
               f"{n_used} finished cell{'s' if n_used != 1 else ''} over {len(datasets)} dataset(s) "
               f"({e(', '.join(_dataset_name(d) for d in datasets)) or 'none'}), "
               f"backbone(s) {e(', '.join(sorted({g.backbone for g in groups}))) or 'none'}, "
               f"task(s) {e(', '.join(sorted({g.task for g in groups}))) or 'none'}, "
               f"arms {e(', '.join(f'{m}/{p}' for m, p in arms)) or 'none'}, "
               f"label counts {e(', '.join(_short_n(n) for n in ns)) or 'none'}, "
               f"{len(seeds)} seed(s).</p>")
    out.append("<p><b>Utility</b> U(n) = n<sub>scratch</sub>(a(n)) / n − 1: how many times more labels the "
               "from-scratch model needs to match the pretrained model finetuned on n labels, minus one "
               "(0: no benefit, 1: worth doubling the labels, &lt; 0: pretraining hurts). "
               f"The scratch curve is {_method_words(analysis.utility_method)}; intervals are "
               f"{analysis.ci:.0%} percentile bootstraps over seeds ({analysis.bootstrap} resamples). "
               "Where the pretrained model is better than scratch at every measured label count the "
               "utility is only a lower bound, written <b>≥ x</b>; where it is no better than scratch at "
               "the smallest count, an upper bound, <b>≤ x</b>.</p>")
    out.append(_improving_banner(analysis))
    if analysis.skipped:
        out.append(f"<p class='note'>{len(analysis.skipped)} row(s) were left out of the analysis "
                   "(listed under <a href='#run'>What was run</a>).</p>")
    out.append(_summary_tables(analysis))
    out.append(_budget_section(list(checks)))

    # ---- figures
    out.append("<h2>Accuracy vs labels</h2><p>Primary metric on the test split at the best validation "
               "epoch, mean ± one standard deviation over seeds. Solid: finetuning; dashed: linear probe; "
               "dotted: kNN. A hollow marker means at least one seed was still improving when its "
               "budget ran out, so that point may be worse than the arm can reach.</p>")
    out += [_img(n, *figs[n]) for n in figs if n.startswith("accuracy_")]
    out.append("<h2>Utility vs labels</h2>")
    util_figs = [n for n in figs if n.startswith("utility_")]
    if util_figs:
        out.append("<p>Finetuned arm of each method against scratch, with bootstrap intervals. "
                   "<b>The grey regions cannot be measured</b>: above the curve U = N<sub>max</sub>/n − 1 "
                   "the pretrained model would have to be compared with a scratch model trained on more "
                   "labels than the study ran (N<sub>max</sub>, the largest scratch label count), and below "
                   "U = N<sub>min</sub>/n − 1 with one trained on fewer than the smallest. A result there is "
                   "drawn as a bound: ▲ with an arrow up (at least), ▼ with an arrow down (at most), never "
                   "as a point.</p>")
        out += [_img(n, *figs[n]) for n in util_figs]
    else:
        out.append("<p class='note'>No utility: it needs scratch finetune cells and pretrained finetune "
                   "cells on the same dataset, backbone and task.</p>")

    out.append(_factor_section(analysis, factors, figs))
    out.append(_linear_section(scatter, correlations, figs))
    out.append(_run_section(analysis, rows, spec, meta))
    out.append("</body></html>\n")
    return "\n".join(out)


def _summary_tables(analysis: Analysis) -> str:
    e = html.escape
    panels = _by_backbone_task([g for g in analysis.groups if g.utility])
    if not panels:
        return ("<p class='note'>No utility to summarise: the study has no pretrained finetune cells "
                "with matching scratch cells.</p>")
    parts = []
    any_flag = False
    for (backbone, task), groups in panels.items():
        ns = sorted({p.n for g in groups for pts in g.utility.values() for p in pts})
        parts.append(f"<h3>{e(task)} · {e(backbone)} <span class='sub'>({e(groups[0].metric)})</span></h3>")
        parts.append("<table><tr><th class='l'>dataset</th><th class='l'>method</th>" +
                     "".join(f"<th>n={_short_n(n)}</th>" for n in ns) + "</tr>")
        for g in groups:
            for method, pts in sorted(g.utility.items()):
                by_n = {p.n: p for p in pts}
                cells = []
                for n in ns:
                    p = by_n.get(n)
                    if p is None:
                        cells.append("<td></td>")
                        continue
                    flagged = (method, n) in g.flags
                    any_flag |= flagged
                    cls = "bound" if p.is_bound else ("pos" if p.ci_low > 0 else "neg" if p.ci_high < 0 else "")
                    tip = (f"{g.metric} {p.accuracy:.4g} over {p.n_seeds} seed(s); scratch-equivalent "
                           f"{'≥ ' if p.kind == 'lower' else '≤ ' if p.kind == 'upper' else '≈ '}"
                           f"{p.n_scratch_equiv:.0f} labels; {p.frac_lower + p.frac_upper:.0%} of resamples "
                           f"were bounds" + (f"; {p.note}" if p.note else ""))
                    cells.append(f"<td class='{cls}' title='{e(tip)}'>{e(str(p))}"
                                 f"{'<sup>' + _FLAG + '</sup>' if flagged else ''}</td>")
                parts.append(f"<tr><td class='l'>{e(_dataset_name(g.dataset))}</td><td class='l'>{e(method)}</td>"
                             + "".join(cells) + "</tr>")
        parts.append("</table>")
    foot = ("<p><sup>†</sup> computed from at least one cell (pretrained at that n, or the scratch cells "
            "its scratch-equivalent was read from) whose validation was still improving when its budget "
            "ran out, or that gained when re-run at a larger budget (<a href='#budget'>budget check</a>); "
            "see the list under <a href='#run'>What was run</a>.</p>") if any_flag else ""
    return ("<p>Green: the whole interval is above 0; red: below 0; italic: a bound. "
            "[a, ≥b]: resamples beyond the scratch range could push that end further. "
            "Hover a cell for its metric and scratch-equivalent label count.</p>"
            + "".join(parts) + foot)


def _factor_section(analysis: Analysis, factors: list[dict], figs: dict) -> str:
    e = html.escape
    head = "<h2>Utility by data factor</h2>"
    datasets = sorted({g.dataset for g in analysis.groups if g.utility})
    if len(datasets) < 2:
        which = e(_dataset_name(datasets[0])) if datasets else "no dataset with a utility"
        return head + (f"<p>Only one dataset setting ({which}) in this study: comparing factors needs "
                       "utilities on at least two settings of Texture, Colour, Viewpoint and Lighting.</p>")
    if not factors:
        return head + ("<p>No method has utilities on two factor-named datasets at a shared label count, "
                       "so factors cannot be compared.</p>")
    out = [head, "<p>For each factor, the mean utility over the datasets with it on (varied) and off (fixed), "
                 "at the smallest label count every dataset shares, where pretraining matters most. "
                 "A mean that includes bounds is itself a bound (≥ or ≤; ~ when both kinds mix).</p>"]
    if "factor_utility.png" in figs:
        out.append(_img("factor_utility.png", *figs["factor_utility.png"]))
    out.append("<table><tr><th class='l'>task</th><th class='l'>backbone</th><th class='l'>method</th><th>n</th>" +
               "".join(f"<th>{L} on / off (Δ)</th>" for L in LETTERS) + "</tr>")
    for entry in factors:
        cells = []
        for L in LETTERS:
            f = entry["factors"].get(L)
            if f is None:
                cells.append("<td>–</td>")
                continue
            on, off = f["on"], f["off"]
            # round first so that a difference of rounding size does not print as -0.00
            cells.append(f"<td>{on[1]}{on[0]:.2f} / {off[1]}{off[0]:.2f} ({round(f['delta'], 2) + 0.0:+.2f})</td>")
        out.append(f"<tr><td class='l'>{e(entry['task'])}</td><td class='l'>{e(entry['backbone'])}</td>"
                   f"<td class='l'>{e(entry['method'])}</td><td>{_short_n(entry['n'])}</td>{''.join(cells)}</tr>")
    out.append("</table>")
    return "\n".join(out)


def _linear_section(points: list[dict], correlations: list[dict], figs: dict) -> str:
    head = "<h2>Linear probe vs finetuning</h2>"
    shown = [c for c in correlations if c["n"] >= MIN_CORR_POINTS]
    if not shown:
        return head + (f"<p>Too few paired points ({len(points)}) for a rank correlation: it needs at least "
                       f"{MIN_CORR_POINTS} (method, dataset, label count) combinations with both a linear-probe "
                       "and a finetuned result.</p>")
    e = html.escape
    out = [head, "<p>Each point is one pretrained method on one dataset at one label count: its linear-probe "
                 "result against its finetuned result and its utility. Spearman's ρ and Kendall's τ are rank "
                 "correlations. Pooled over label counts both results grow with n, which inflates the pooled "
                 "numbers; the per-n rows compare methods and datasets at a fixed label count. Utility "
                 "bounds are left out of its correlation. For an error metric (lower is better) agreement "
                 "between the linear probe and utility shows as a negative correlation.</p>"]
    if "linear_vs_finetune.png" in figs:
        out.append(_img("linear_vs_finetune.png", *figs["linear_vs_finetune.png"]))
    out.append("<table><tr><th class='l'>task</th><th class='l'>linear probe against</th><th class='l'>labels</th>"
               "<th>points</th><th>Spearman ρ</th><th>Kendall τ</th></tr>")
    for c in shown:
        out.append(f"<tr><td class='l'>{e(c['task'])}</td><td class='l'>{e(c['against'])}</td>"
                   f"<td class='l'>{e(c['scope'])}</td><td>{c['n']}</td>"
                   f"<td>{_fmt_corr(c['spearman'])}</td><td>{_fmt_corr(c['kendall'])}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _run_section(analysis: Analysis, rows: list[dict], spec, meta) -> str:
    e = html.escape
    out = ["<h2 id='run'>What was run</h2>"]
    total_s = sum(float(r.get("seconds") or 0) for r in rows if _finite(r.get("seconds")))
    out.append(f"<p>{len(rows)} row(s), {total_s / 3600:.2f} h of cell time in total. Every cell is in "
               "<code>cells.csv</code> beside this file.</p>")
    out.append("<h3>Cells still improving at the end of their budget</h3>")
    if analysis.improving:
        out.append("<p class='note'>These cells' validation metric was still improving when their training "
                   "budget ran out: their results may understate what the arm can reach, and any utility "
                   f"computed from them carries <sup>{_FLAG}</sup>. A fair comparison gives each arm the "
                   "budget to converge.</p>")
        out.append(_cells_table(analysis.improving))
    else:
        out.append("<p class='ok'>No cell was still improving when its budget ran out.</p>")
    if analysis.skipped:
        out.append("<h3>Rows left out of the analysis</h3><table><tr><th class='l'>cell</th>"
                   "<th class='l'>reason</th></tr>")
        out += [f"<tr><td class='l'>{e(str(r.get('cell_id', '?')))}</td><td class='l'>{e(why)}</td></tr>"
                for r, why in analysis.skipped]
        out.append("</table>")
    out.append("<h3>Spec</h3>")
    out.append(f"<pre>{e(_dump(spec))}</pre>" if spec else "<p>No spec was given.</p>")
    versions = {"selfstudy": __version__, "python": platform.python_version(), "platform": platform.platform(),
                **{p: _version(p) for p in ("numpy", "torch", "matplotlib", "moderngl")}}
    out.append("<h3>Versions</h3>" + _kv_table(versions))
    if meta:
        out.append("<h3>Run details</h3>" + _kv_table(meta))
    out.append(f"<details><summary>All {len(rows)} cells</summary>{_cells_table(rows)}</details>")
    return "\n".join(out)


def _budget_section(checks: list[dict]) -> str:
    """The budget-check table: each re-run cell, its numbers at both budgets and the verdict."""
    if not checks:
        return ""
    e = html.escape
    bad = sum(t["under_budget"] for t in checks)
    tol = checks[0]["tolerance"]
    head = ("<h2 id='budget'>Budget check</h2><p>These finetune cells were run again with their training "
            f"budget (epochs, minimum and maximum steps) multiplied by the factor shown. A cell whose "
            f"validation metric gained more than {tol:g} with the larger budget had not converged: it is "
            f"flagged <sup>{_FLAG}</sup> wherever it is used. <b>{bad} of {len(checks)}</b> gained more.</p>")
    cols = ["dataset", "backbone", "task", "method", "n", "seed", "factor", "val", "val ×", "test", "test ×",
            "gain", "steps", "steps ×", "verdict"]
    out = [head, "<table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"]
    for t in checks:
        verdict = f"under budget {_FLAG}" if t["under_budget"] else "converged"
        vals = [_dataset_name(t["dataset"]), t["backbone"], t["task"], t["method"], t["n_labels"], t["seed"],
                f"x{t['factor']:g}" if t["factor"] else "", _cell_text(t["val"]), _cell_text(t["val_check"]),
                _cell_text(t["test"]), _cell_text(t["test_check"]), f"{t['gain']:+.4f}", t["steps"],
                t["steps_check"], verdict]
        cls = " class='bad'" if t["under_budget"] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{e(str(v))}</td>" for v in vals) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _improving_banner(analysis: Analysis) -> str:
    k = len(analysis.improving)
    if not k:
        return "<p class='ok'>Every cell had converged (validation no longer improving) when its budget ran out.</p>"
    under = sum(bool(r.get("under_budget")) for r in analysis.improving)
    extra = (f" ({under} of them because a larger budget still improved them, see the "
             f"<a href='#budget'>budget check</a>)") if under else ""
    return (f"<p class='note'><b>Honesty note:</b> {k} cell{'s were' if k != 1 else ' was'} still improving when "
            f"{'their' if k != 1 else 'its'} budget ran out{extra} (hollow markers in the figures, "
            f"<sup>{_FLAG}</sup> in the tables, listed under <a href='#run'>What was run</a>). Such a result may "
            "be worse than the arm can reach, and a utility that leans on an under-trained scratch cell is too "
            "high.</p>")


def _cells_table(rows: list[dict]) -> str:
    e = html.escape
    cols = ("cell_id", "dataset", "backbone", "task", "method", "protocol", "n_labels", "seed", "metric",
            "test", "val", "test_last", "still_improving", "under_budget", "steps", "seconds")
    out = ["<table><tr>" + "".join(f"<th class='l'>{c}</th>" for c in cols) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td class='l'>{e(_cell_text(r.get(c)))}</td>" for c in cols) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _img(name: str, png: bytes, caption: str) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    return (f"<figure><img src=\"data:image/png;base64,{b64}\" alt=\"{html.escape(caption)}\">"
            f"<figcaption>{html.escape(caption)} ({html.escape(name)})</figcaption></figure>")


def _kv_table(d: dict) -> str:
    e = html.escape
    return ("<table>" + "".join(f"<tr><th class='l'>{e(str(k))}</th><td class='l'>{e(_cell_text(v))}</td></tr>"
                                for k, v in d.items()) + "</table>")


# ------------------------------------------------------------------------------------------ helpers


def _unusable(row: dict) -> str:
    """Why a row cannot enter the analysis, or ''."""
    if row.get("kind", "downstream") != "downstream":
        return f"a {row.get('kind')} cell, not a downstream result"
    status = row.get("status", "done")
    if status != "done":
        return f"status is {status!r}, not 'done'"
    missing = [k for k in _REQUIRED if row.get(k) is None]
    if missing:
        return f"missing {', '.join(missing)}"
    n = row["n_labels"]
    if isinstance(n, float) and n.is_integer():
        n = int(n)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        return f"n_labels {n!r} is not a positive integer"
    if not _finite(row["test"]):
        return f"test result {row['test']!r} is not a finite number"
    return ""


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _bounded_mean(points: list[UtilityPoint]) -> tuple[float, str]:
    """Mean of utility values, bounds at their bound value, with the mark that mean then deserves."""
    kinds = {p.kind for p in points} - {"value"}
    mark = "" if not kinds else "~" if len(kinds) == 2 else ("≥" if "lower" in kinds else "≤")
    return float(np.mean([p.value for p in points])), mark


def _correlations(points: list[dict]) -> list[dict]:
    """Spearman/Kendall of linear probe vs finetuned result and vs utility, per task, pooled and per n."""
    out = []
    for task in sorted({p["task"] for p in points}):
        pts = [p for p in points if p["task"] == task]
        scopes = [("all", pts)] + [(f"n={_short_n(n)}", [p for p in pts if p["n"] == n])
                                   for n in sorted({p["n"] for p in pts})]
        for scope, sel in scopes:
            r = rank_correlation([p["linear"] for p in sel], [p["finetune"] for p in sel])
            out.append({"task": task, "scope": scope, "against": "finetune", **r})
            vals = [p for p in sel if p["utility"] is not None and p["utility"].kind == "value"]
            r = rank_correlation([p["linear"] for p in vals], [p["utility"].value for p in vals])
            out.append({"task": task, "scope": scope, "against": "utility", **r})
    return out


def _by_backbone_task(groups: list[Group]) -> dict[tuple[str, str], list[Group]]:
    out: dict[tuple[str, str], list[Group]] = {}
    for g in groups:
        out.setdefault((g.backbone, g.task), []).append(g)
    return dict(sorted(out.items()))


def _colours(methods: list[str]) -> dict[str, str]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    out = {m: _hex(cmap(i % 10)) for i, m in enumerate(methods)}
    out[SCRATCH] = "#000000"
    return out


def _hex(rgba) -> str:
    return "#" + "".join(f"{int(round(c * 255)):02x}" for c in rgba[:3])


def _dataset_name(d: str) -> str:
    try:
        f = Factors.parse(d)
    except UserError:
        return str(d)
    return f"{f.letters} ({f.bits})"


def _short_n(n: int) -> str:
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    if n >= 1000 and n % 100 == 0:
        return f"{n / 1000:.1f}k"
    return str(n)


def _fname(kind: str, backbone: str, task: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{kind}_{backbone}_{task}") + ".png"


def _method_words(method: str) -> str:
    if method == "paper":
        return ("the raw mean over seeds, interpolated linearly in label count (the paper's rule, "
                "with its two bugs fixed)")
    return "the mean over seeds made monotone by isotonic regression and interpolated linearly in log n"


def _fmt_corr(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{x:+.2f}"


def _align(table: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]


def _csv_value(v):
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, default=str)
    if isinstance(v, str):
        # One physical line per cell, even for an error text with a traceback in it.
        return v.replace("\r\n", "\\n").replace("\n", "\\n")
    return "" if v is None else v


def _cell_text(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, default=str)
    return "" if v is None else str(v)


def _dump(spec) -> str:
    try:
        import yaml

        return yaml.safe_dump(spec, sort_keys=False, default_flow_style=False)
    except Exception:  # a spec with values YAML cannot represent is still worth showing
        return json.dumps(spec, indent=2, default=str)


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
