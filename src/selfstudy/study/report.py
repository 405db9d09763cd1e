"""The study report, a rendering of its analysis: ``summary.json``, one self-contained HTML page, its
figures as PNG files, every cell as CSV, and the plain-text summary.

:func:`build_report` analyses the finished cells of a study (:mod:`selfstudy.study.analysis`: utility and
Δ with paired intervals, the signal guard, the five findings) and writes, into the HTML file's folder,

- ``summary.json``: the point record of every utility, the findings with their verdicts and evidence,
  the trivial baselines and the flags (:func:`selfstudy.study.analysis.summarise`);
- ``<name>.html`` rendered from it: the utility tables first (a method against its own architecture's
  scratch arm, CMC against ``scratch-cmc``, with a second row "vs full scratch"), the backbone comparison
  (with two or more backbones), the findings, accuracy vs labels (with each task's trivial baseline as a
  line), utility vs labels, linear probe vs finetuning, and what was run. Figures are embedded as
  base64 PNG and the CSS is inline, so the one file can be mailed around;
- one PNG per figure and ``cells.csv`` (one line per row) beside it.

:func:`summary_text` renders the same summary as plain text for a terminal (``summary.txt``).

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
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np

from selfstudy import __version__
from selfstudy.core.constants import SCRATCH
from selfstudy.core.io import atomic_write_bytes, atomic_write_text
from selfstudy.errors import UserError
from selfstudy.study.transfer import transfer_html
from selfstudy.study.analysis import (BASELINE_ABSENT, MIN_CORR_POINTS, VS_FULL_SCRATCH, Analysis, Group,  # noqa: F401
                                      _finite, analyse, apply_budget_checks, correlations as _correlations,
                                      dataset_name as _dataset_name, help_text, linear_vs_finetune,
                                      short_n as _short_n, summarise, summary_rows)

#: The columns a row is expected to have, in the CSV's order; other keys follow, sorted.
ROW_KEYS = ("cell_id", "dataset", "method", "backbone", "task", "protocol", "n_labels", "seed", "status",
            "metric", "higher_is_better", "test", "val", "test_last", "still_improving", "steps",
            "seconds", "metrics", "config")
SUMMARY_JSON = "summary.json"
_LINESTYLE = {"finetune": "-", "linear": "--", "knn": ":"}
_FLAG = "†"
_VERDICT_CLASS = {"supported": "pos", "contradicted": "neg", "inconclusive": "", "not measured": "nm"}


def counted_factors(table: list[dict]) -> dict[str, tuple[float, str]]:
    """cell id -> (the budget multiple whose numbers count, the cell's status) for a ``budget: auto``
    table (``autobudget.resolve_rows`` gives every entry its cell's decision: ``counted``, ``status``).
    Empty for a table of single checks (:func:`apply_budget_checks`)."""
    return {t["cell_id"]: (t["counted"], t["status"]) for t in table if "counted" in t}


def _counted_words(counted: dict[str, tuple[float, str]]) -> str:
    """``counted budget: x1 for 6 cells, x2 for 1 cell; 1 not converged within the cap``."""
    by = Counter(f for f, _ in counted.values())
    words = ", ".join(f"x{f:g} for {k} cell{'s' if k != 1 else ''}" for f, k in sorted(by.items()))
    stuck = sum(status == "not_converged" for _, status in counted.values())
    return f"counted budget: {words}" + (f"; {stuck} not converged within the cap" if stuck else "")


def _doubling(t: dict) -> str:
    """``x1 -> x2`` for an entry of a ``budget: auto`` table, ``x2`` for a single check."""
    if "factor_to" in t:
        return f"x{t['factor_from']:g} -> x{t['factor_to']:g}"
    return f"x{t['factor']:g}" if t["factor"] else ""


def budget_check_text(table: list[dict]) -> list[str]:
    """Plain-text lines on the budget checks (none when there were none). For ``budget: auto`` the head
    says which budget multiple counted for how many cells (a later doubling, x4 or x8, when the first
    ones still gained), each listed re-run which doubling it was."""
    if not table:
        return []
    bad = [t for t in table if t["under_budget"]]
    tol = table[0]["tolerance"]
    counted = counted_factors(table)
    if counted:
        head = f"budget check ({_counted_words(counted)}): {len(bad)} of {len(table)} doubling(s)"
    else:
        factors = sorted({t["factor"] for t in table if t["factor"]})
        fx = "/".join(f"x{f:g}" for f in factors) or "larger"
        head = f"budget check ({fx} budget): {len(bad)} of {len(table)} re-run cell(s)"
    lines = [f"{head} gained more than {tol:g} "
             f"in validation {table[0]['metric']}" + (f" (flagged {_FLAG}):" if bad else ": every checked cell "
                                                       "had converged")]
    for t in bad[:12]:
        step = f" ({_doubling(t)})" if counted else ""
        lines.append(f"  {_dataset_name(t['dataset'])} {t['backbone']} {t['task']} {t['method']} "
                     f"n={t['n_labels']} s{t['seed']}: val {t['val']:.4g} -> {t['val_check']:.4g}, "
                     f"test {t['test']:.4g} -> {t['test_check']:.4g}{step}")
    if len(bad) > 12:
        lines.append(f"  ... and {len(bad) - 12} more (see the report)")
    return lines


def interval_words(summary: dict) -> str:
    """How the intervals of a summary were made, in words (says so when there are none)."""
    pts = summary["points"]
    if pts and all("one_seed" in p["flags"] for p in pts):
        return "one seed: no intervals and no significance"
    return (f"[{summary['ci']:.0%} t-interval over seeds: U from a paired seed-level bootstrap "
            f"({summary['bootstrap']} resamples), Δ on paired per-seed differences]")


def summary_text(summary: dict, checks: list[dict] | None = None) -> str:
    """The plain-text rendering of a :func:`~selfstudy.study.analysis.summarise` record."""
    points = summary["points"]
    lines = [f"note: {n}" for n in summary.get("notes") or []]
    if not points:
        lines.append("no utility: it needs scratch finetune cells and pretrained finetune cells of the same "
                     "dataset, backbone and task. Mean primary metric per arm instead:")
        arms = summary.get("arms", [])
        ns = sorted({int(n) for a in arms for n in a["means"]})
        table = [["dataset", "backbone", "task", "method", "protocol"] + [f"n={n}" for n in ns]]
        for a in arms:
            table.append([_dataset_name(a["dataset"]), a["backbone"], a["task"], a["method"], a["protocol"]] +
                         [f"{a['means'][n]:.3f}" if n in a["means"] else "" for n in ns])
        if len(table) == 1:
            return "no finished cells to summarise"
        return "\n".join(lines + _align(table) + budget_check_text(checks or []))
    ns = sorted({r["n"] for r in points})
    base = summary.get("baseline") or SCRATCH
    with_base = _show_baselines(summary)
    table = [["dataset", "backbone", "task", "method"] + (["baseline"] if with_base else []) + ["quantity"] +
             [f"n={n}" for n in ns]]
    for (d, b, t, m), label, cells in _table_rows(summary):
        table.append([_dataset_name(d), b, t, m] + ([label] if with_base else []) + ["U"] +
                     [_point_text(cells[n]) if n in cells else "" for n in ns])
        table.append(["", "", "", ""] + ([""] if with_base else []) + ["Δ"] +
                     [_delta_text(cells[n]) if n in cells else "" for n in ns])
    lines.append(f"utility U(n) = n_{base}/n - 1 ({summary['utility_method']} {base} fit; "
                 f"{interval_words(summary)}; ≥ / ≤ = bound outside the {base} range; n/m = not measurable; "
                 "! = U and Δ disagree in sign; ~ = extrapolated)")
    lines += _baseline_lines(summary)
    lines += _own_baseline_lines(summary)
    lines += _align(table)
    lines += help_text(summary.get("help") or [], base)
    lines += backbone_text(summary)
    improving = summary["flags"]["still_improving_cells"]
    if improving:
        why = "whose validation was still improving when its budget ran out"
        if summary["flags"].get("budget_checks_under_budget"):
            why += " or that gained at a larger budget"
        lines.append(f"{_FLAG} uses a cell {why} ({len(improving)} such cell{'s' if len(improving) != 1 else ''})")
    nm = [p for p in points if p["kind"] == "not_measurable"]
    for p in nm[:6]:
        lines.append(f"n/m {_dataset_name(p['dataset'])} {p['backbone']} {p['task']} {p['method']} n={p['n']}: "
                     f"{p['reason']}")
    if len(nm) > 6:
        lines.append(f"n/m ... and {len(nm) - 6} more (see summary.json)")
    for p in points:
        if p["kind"] == "extrapolated":
            lines.append(f"~ {_dataset_name(p['dataset'])} {p['task']} {p['method']} n={p['n']}: {p['note']}")
    if summary.get("findings"):
        lines.append("findings:")
        for f in summary["findings"]:
            lines.append(f"  {f['id']} {f['verdict']}: {f['claim']}: {f['reason']}")
    lines += budget_check_text(checks or [])
    return "\n".join(lines)


def summary_table_text(rows: list[dict], *, utility_method: str = "isotonic", bootstrap: int = 1000,
                       seed: int = 0, checks: list[dict] | None = None, baseline: str | None = None) -> str:
    """The plain-text summary of ``rows`` (``checks``: the table of :func:`apply_budget_checks`;
    ``baseline``: the arm utility is computed against, :func:`~selfstudy.study.analysis.analyse`)."""
    analysis = analyse(rows, utility_method, bootstrap, seed, baseline=baseline)
    return summary_text(_summary(analysis, checks), checks)


def _show_baselines(summary: dict) -> bool:
    """Whether the utility tables name each row's baseline: some row is not against the summary's
    baseline (an own-architecture scratch arm, a fallback) or has a second row against full scratch."""
    base = summary.get("baseline") or SCRATCH
    return bool(summary.get("secondary")) or any(p.get("baseline", base) != base for p in summary["points"])


def _baseline_label(p: dict) -> str:
    """The baseline cell of a utility row: ``scratch-cmc (primary)`` for an own-architecture scratch arm,
    ``vs full scratch`` for its second row, else the arm's name."""
    if p.get("role") == VS_FULL_SCRATCH:
        return VS_FULL_SCRATCH
    b = p.get("baseline") or SCRATCH
    return f"{b} (primary)" if b.startswith(SCRATCH + "-") else b


def _table_rows(summary: dict) -> list[tuple[tuple, str, dict]]:
    """``((dataset, backbone, task, method), baseline label, {n: record})`` per utility row: each
    primary row, followed by its "vs full scratch" row where there is one."""
    keyed: dict = {}
    for r in summary["points"]:
        keyed.setdefault((r["dataset"], r["backbone"], r["task"], r["method"]), {})[r["n"]] = r
    second: dict = {}
    for r in summary.get("secondary") or []:
        second.setdefault((r["dataset"], r["backbone"], r["task"], r["method"]), {})[r["n"]] = r
    out = []
    for key, cells in keyed.items():
        out.append((key, _baseline_label(next(iter(cells.values()))), cells))
        if key in second:
            out.append((key, VS_FULL_SCRATCH, second[key]))
    return out


def _own_baseline_lines(summary: dict) -> list[str]:
    """One line per method whose primary utility is against its own architecture's scratch arm."""
    own = {}
    for r in summary.get("secondary") or []:
        own[r["method"]] = r["primary_baseline"]
    for r in summary["points"]:
        if (r.get("baseline") or SCRATCH).startswith(SCRATCH + "-"):
            own.setdefault(r["method"], r["baseline"])
    return [f"{m}: primary utility against {b} (its own architecture trained from scratch); "
            f"the row '{VS_FULL_SCRATCH}' is against scratch on the full backbone (architecture and pretraining "
            f"together)" for m, b in sorted(own.items())]


def backbone_text(summary: dict) -> list[str]:
    """The backbone comparison of a summary as text lines (none with fewer than two backbones)."""
    bc = summary.get("backbone_comparison")
    if not bc:
        return []
    lines = [f"backbones ({', '.join(bc['backbones'])}): U per backbone against each one's baseline; ΔU = "
             "U(second) − U(first) where both are values, its t-interval from a paired seed bootstrap that draws "
             "the same seeds on both; gain = Δ(second) − Δ(first) in the metric's direction, paired per seed"]
    if not bc["comparisons"]:
        return lines + [f"  nothing to compare: {bc['reason']}"]
    ns = sorted({p["n"] for c in bc["comparisons"] for p in c["points"]})
    table = [["dataset", "task", "method", "quantity"] + [f"n={n}" for n in ns]]
    ends = []  # the table row after which each comparison's verdict follows
    for c in bc["comparisons"]:
        a, b = c["backbones"]
        cells = {p["n"]: p for p in c["points"]}
        for i, bb in enumerate((b, a)):
            table.append(([_dataset_name(c["dataset"]), c["task"], c["method"]] if i == 0 else ["", "", ""]) +
                         [f"U {bb}"] + [cells[n]["u"][bb]["text"] if n in cells else "" for n in ns])
        for label, key in ((f"ΔU {a} − {b}", "delta_u"), ("gain difference", "gain_diff")):
            table.append(["", "", "", label] + [_diff_text(cells[n], key) if n in cells else "" for n in ns])
        ends.append((len(table) - 1, c["sentence"]))
    aligned = _align(table)
    lines.append("  " + aligned[0])
    start = 1
    for end, sentence in ends:
        lines += ["  " + x for x in aligned[start:end + 1]]
        lines.append(f"    -> {sentence}")
        start = end + 1
    if bc.get("f5"):
        lines.append(f"  over independent units (F5 {bc['f5']['verdict']}): {bc['f5']['reason']}")
    return lines


def _diff_text(p: dict, key: str) -> str:
    v = p[key]
    if v is None:
        return "–"

    def f(x):
        return f"{x:+.2f}" if key == "delta_u" else (f"{x:+.3f}" if abs(v) < 5 else f"{x:+.1f}")

    lo = p[key + "_ci_low"]
    return f(v) if lo is None else f"{f(v)} [{f(lo)}, {f(p[key + '_ci_high'])}]"


def _baseline_lines(summary: dict) -> list[str]:
    """Which baseline the utilities are against, when it is not scratch, and where it was missing."""
    base = summary.get("baseline") or SCRATCH
    if base == SCRATCH:
        return []
    lines = [f"against {base} (utility.baseline) wherever it was finetuned"]
    absent = {}
    for p in summary["points"]:
        if BASELINE_ABSENT in p["flags"]:
            absent[(p["dataset"], p["backbone"], p["task"])] = p["baseline"]
    for (d, b, t), used in sorted(absent.items()):
        lines.append(f"  {_dataset_name(d)} {b} {t}: no finished {base} finetune cells, against {used} instead")
    return lines


def _summary(analysis: Analysis, checks) -> dict:
    s = summarise(analysis, checks)
    s["arms"] = [{"dataset": g.dataset, "backbone": g.backbone, "task": g.task, "method": m, "protocol": p,
                  "means": {n: arm.mean(n) for n in sorted(arm.values)}}
                 for g in analysis.groups for (m, p), arm in sorted(g.arms.items())]
    return s


def _point_text(r: dict) -> str:
    return r["text"] + (" !" if "inconsistent" in r["flags"] else "")


def _delta_text(r: dict) -> str:
    if r["delta"] is None:
        return "–"

    def f(x):  # three decimals for fractions, one for degrees and the like
        return f"{x:+.3f}" if abs(r["delta"]) < 5 else f"{x:+.1f}"

    if r["delta_ci_low"] is None:
        return f(r["delta"])
    return f"{f(r['delta'])} [{f(r['delta_ci_low'])}, {f(r['delta_ci_high'])}]"


# ----------------------------------------------------------------------------------------- report


def build_report(rows: list[dict], out_html: Path, spec: dict | None = None, meta: dict | None = None, *,
                 utility_method: str = "isotonic", bootstrap: int = 1000, seed: int = 0,
                 ci: float = 0.95, checks: list[dict] | None = None, headline: list[str] | None = None,
                 baseline: str | None = None, notes: list[str] | None = None) -> dict:
    """Write ``summary.json``, the HTML report rendered from it, its PNG figures and ``cells.csv`` into
    ``out_html``'s folder. ``headline``: text lines shown first on the page (a study on imported data:
    the practitioner's answer and the class counts, :func:`selfstudy.study.own.headline`). ``notes``:
    what a reader must know to read the intervals (e.g. a pretraining shared by every seed,
    :func:`selfstudy.study.spec.shared_notes`), kept in ``summary.json`` and shown above the tables.

    rows: the study's cells (keys in :data:`ROW_KEYS`); spec: the study spec, shown as run;
    meta: anything else worth recording (database path, device, ...), shown as a table;
    checks: the budget-check table of :func:`apply_budget_checks` (rows already marked by it).
    ``utility_method``, ``bootstrap``, ``seed``, ``ci`` and ``baseline`` (the arm utility is computed
    against, e.g. ``weights:imagenet``; default scratch) go to the analysis.
    Returns ``{"html": Path, "json": Path, "csv": Path, "figures": [Path], "summary": [point records],
    "record": the summary.json dict, "findings": [dict], "correlations": [dict], "text": str}``.
    """
    out_html = Path(out_html)
    if out_html.is_dir():
        raise UserError(f"report path {out_html} is a folder: give a file name such as {out_html / 'report.html'}")
    rows = list(rows)
    folder = out_html.parent
    folder.mkdir(parents=True, exist_ok=True)
    analysis = analyse(rows, utility_method, bootstrap, seed, ci, baseline=baseline)
    record = _summary(analysis, checks)
    if notes:
        record["notes"] = list(notes)
    json_path = folder / SUMMARY_JSON
    atomic_write_text(json_path, json.dumps(record, indent=1, default=str, allow_nan=False) + "\n")
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
    f4 = next((f for f in record["findings"] if f["id"] == "F4"), None)
    if f4 and f4["evidence"]:
        figures.append(("findings_F4.png", _f4_figure(f4), "F4: ΔU of matched dataset pairs per factor"))
    scatter = linear_vs_finetune(analysis)
    correlations = _correlations(scatter)
    if any(c["n"] >= MIN_CORR_POINTS for c in correlations):
        figures.append(("linear_vs_finetune.png", _scatter_figure(scatter, correlations, colours),
                        "linear probe vs finetuning (pooled over datasets and label counts)"))

    fig_paths = []
    for name, png, _ in figures:
        path = folder / name
        atomic_write_bytes(path, png)
        fig_paths.append(path)
    csv_path = folder / "cells.csv"
    atomic_write_text(csv_path, cells_csv(rows))

    page = _html_page(analysis, record, rows, figures, scatter, correlations, spec, meta, checks or [],
                      headline=headline)
    atomic_write_text(out_html, page)
    return {"html": out_html, "json": json_path, "csv": csv_path, "figures": fig_paths,
            "summary": record["points"], "record": record, "findings": record["findings"],
            "correlations": correlations, "text": summary_text(record, checks)}


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
        if g.trivial is not None:
            ax.axhline(g.trivial, color="0.45", ls=(0, (4, 2)), lw=1.1)
            ax.annotate("trivial baseline", (0.01, g.trivial), xycoords=("axes fraction", "data"), fontsize=7,
                        color="0.35", va="bottom")
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
    if any(g.trivial is not None for g in groups):
        handles.append(Line2D([], [], color="0.45", ls=(0, (4, 2)), label="trivial baseline (test split)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), fontsize=8,
               frameon=False)
    return _png(fig)


def _utility_figure(groups: list[Group], colours: dict[str, str]) -> bytes:
    from matplotlib.lines import Line2D

    fig, axes = _new_figure(*_grid(len(groups)))
    for ax, g in zip(axes, groups):
        base_ns = sorted({n for m in g.utility for n in g.arms[(g.baselines.get(m, SCRATCH), "finetune")].values})
        n_min, n_max = base_ns[0], base_ns[-1]
        all_ns = sorted({p.n for pts in g.utility.values() for p in pts})
        ys = [0.0] + [y for pts in g.utility.values() for p in pts for y in (p.value, p.ci_low, p.ci_high)
                      if y is not None and math.isfinite(y) and p.kind != "extrapolated"]
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
                yerr = np.array([[p.value - p.ci_low if p.has_interval else 0.0 for p in vals],
                                 [p.ci_high - p.value if p.has_interval else 0.0 for p in vals]])
                ax.errorbar(x, y, yerr=np.maximum(yerr, 0), color=c, lw=1.2, capsize=3, ls="-", marker="")
                hollow = np.array([(method, p.n) in g.flags for p in vals])
                ax.plot(x[~hollow], y[~hollow], "o", color=c, ms=5)
                ax.plot(x[hollow], y[hollow], "o", mfc="white", mec=c, mew=1.5, ms=7)
            for p in pts:
                if p.kind == "not_measurable":
                    ax.plot([p.n * shift], [ylim[0] + 0.5 * pad], "x", color=c, ms=8, mew=2)
                    continue
                if p.kind == "extrapolated":
                    ax.plot([p.n * shift], [min(p.value, ylim[1] - pad / 2)], "D", mfc="white", mec=c, ms=7)
                    continue
                if p.kind == "value":
                    continue
                up = p.kind == "lower"
                x = p.n * shift
                flagged = (method, p.n) in g.flags
                ax.plot([x], [p.value], "^" if up else "v", color=c, ms=8, mfc="white" if flagged else c, mec=c)
                ax.annotate("", xy=(x, p.value), xytext=(0, 22 if up else -22), textcoords="offset points",
                            arrowprops=dict(arrowstyle="<|-", color=c, lw=1.3, shrinkA=0, shrinkB=5))
        if all(p.kind == "not_measurable" for pts in g.utility.values() for p in pts):
            ax.text(0.5, 0.5, "not measurable:\nno signal above the trivial baseline", transform=ax.transAxes,
                    ha="center", va="center", fontsize=9, color="0.3")
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
                Line2D([], [], ls="", marker="s", color="0.88", ms=10, label="beyond the scratch range"),
                Line2D([], [], ls="", marker="x", color="grey", ms=8, mew=2, label="not measurable (no signal)"),
                Line2D([], [], ls="", marker="D", mfc="white", mec="grey", ms=7, label="extrapolated (power law)"),
                Line2D([], [], ls="", marker="o", mfc="white", mec="grey", mew=1.5, ms=7,
                       label="hollow: uses a still-improving cell")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=8,
               frameon=False)
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
            if u is not None and u.kind in ("value", "lower", "upper"):
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
td.pos{background:#eef7ee}td.neg{background:#fbeeee}td.bound{font-style:italic}td.nm{color:#999;background:#f4f4f4}td.ext{color:#555;font-style:italic}td.warn{outline:2px solid #e69500;outline-offset:-2px}td.delta{color:#555;font-size:12px}td.delta.sig{font-weight:bold}td.wrap{white-space:normal;max-width:520px}tr.bad td{background:#fbeeee}
.note{background:#fff8e6;border-left:4px solid #f0b400;padding:.5em .9em;margin:1em 0}
.ok{background:#eef7ee;border-left:4px solid #4a4;padding:.5em .9em;margin:1em 0}
p.warn{background:#fff6e5;border-left:4px solid #e69500;padding:.5em .9em;margin:1em 0}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:13px}
pre{background:#f6f6f6;padding:.7em;overflow:auto;font-size:12px}details{margin:.8em 0}
sup{color:#b35c00;font-weight:bold}
"""


def _html_page(analysis: Analysis, record: dict, rows, figures, scatter, correlations, spec, meta,
               checks=(), headline: list[str] | None = None) -> str:
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
           f"<h1>{e(title)}</h1><p class='sub'>generated {e(now)} · selfstudy {e(__version__)} · "
           f"rendered from <code>{SUMMARY_JSON}</code> beside this file</p>"]
    if headline:  # the practitioner's answer and the dataset's class counts (study.own)
        out.append("<h2>Your answer</h2><pre>" + e("\n".join(headline)) + "</pre>")
    for note in record.get("notes") or []:
        out.append(f"<p class='warn'><b>Note:</b> {e(note)}</p>")

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
    if len(seeds) <= 1:
        intervals = ("<b>One seed: there are no intervals and nothing is marked significant</b> (an interval "
                     "needs the spread of at least two seeds)")
    else:
        intervals = (f"intervals are {record['ci']:.0%} t-intervals over the {len(seeds)} seeds: for Δ on the "
                     "paired per-seed differences, for U with the standard error of a paired seed-level "
                     f"bootstrap ({record['bootstrap']} resamples; one draw of seeds serves every label count "
                     "and both arms)")
    out.append("<p><b>Utility</b> U(n) = n<sub>scratch</sub>(a(n)) / n − 1: how many times more labels the "
               "from-scratch model needs to match the pretrained model finetuned on n labels, minus one "
               "(0: no benefit, 1: worth doubling the labels, &lt; 0: pretraining hurts). <b>Δ</b>(n): the "
               "pretrained minus the scratch result at the same n, in the metric's units. "
               f"The scratch curve is {_method_words(analysis.utility_method)}; {intervals}. "
               "Where the pretrained model is better than every measured scratch result the utility is only "
               "a lower bound, written <b>≥ x</b>; where it is no better than scratch at the smallest count, an "
               "upper bound, <b>≤ x</b>. A utility that reads a cell not above the task's trivial baseline "
               "beyond seed noise is <b>n/m</b>, not measurable.</p>")
    base = record.get("baseline") or SCRATCH
    if base != SCRATCH:
        out.append(f"<p>Utility here is against <b>{e(base)}</b> (the spec's <code>utility.baseline</code>): "
                   f"n<sub>scratch</sub> reads the {e(base)} curve, and Δ is the pretrained minus the {e(base)} "
                   "result." + "".join(f" {e(x.strip())}." for x in _baseline_lines(record)[1:]) + "</p>")
    own = _own_baseline_lines(record)
    if own:
        out.append("<p>" + "<br>".join(e(x) + "." for x in own) + " The findings and the help verdicts read the "
                   "primary row.</p>")
    help_lines = help_text(record.get("help") or [], base)
    if help_lines:
        out.append("<p class='note'>" + "<br>".join(e(x) for x in help_lines) + "</p>")
    out.append(_improving_banner(analysis))
    if analysis.skipped:
        out.append(f"<p class='note'>{len(analysis.skipped)} row(s) were left out of the analysis "
                   "(listed under <a href='#run'>What was run</a>).</p>")
    out.append(_summary_tables(record))
    out.append(_budget_section(list(checks)))
    out.append(_backbone_section(record))
    out.append(_findings_section(record, figs))
    out.append(transfer_html(summary_rows(analysis)))  # study.transfer: "" unless the study transferred

    # ---- figures
    out.append("<h2>Accuracy vs labels</h2><p>Primary metric on the test split at the best validation "
               "epoch, mean ± one standard deviation over seeds. Solid: finetuning; dashed: linear probe; "
               "dotted: kNN; grey dashes: the task's trivial baseline on the test split (majority class, best "
               "constant, all background), where the cells recorded it. A hollow marker means at least one "
               "seed was still improving when its budget ran out, so that point may be worse than the arm "
               "can reach.</p>")
    out += [_img(n, *figs[n]) for n in figs if n.startswith("accuracy_")]
    out.append("<h2>Utility vs labels</h2>")
    util_figs = [n for n in figs if n.startswith("utility_")]
    if util_figs:
        against = "scratch" if base == SCRATCH else f"{e(base)} (scratch where it was not run)"
        out.append(f"<p>Finetuned arm of each method against {against}, with its intervals. "
                   "<b>The grey regions cannot be measured</b>: above the curve U = N<sub>max</sub>/n − 1 "
                   "the pretrained model would have to be compared with a scratch model trained on more "
                   "labels than the study ran (N<sub>max</sub>, the largest scratch label count), and below "
                   "U = N<sub>min</sub>/n − 1 with one trained on fewer than the smallest. A result there is "
                   "drawn as a bound: ▲ with an arrow up (at least), ▼ with an arrow down (at most), never "
                   "as a point; × at the bottom: not measurable.</p>")
        out += [_img(n, *figs[n]) for n in util_figs]
    else:
        out.append("<p class='note'>No utility: it needs scratch finetune cells and pretrained finetune "
                   "cells on the same dataset, backbone and task.</p>")

    out.append(_linear_section(scatter, correlations, figs))
    out.append(_run_section(analysis, rows, spec, meta))
    out.append("</body></html>\n")
    return "\n".join(out)


def _summary_tables(record: dict) -> str:
    e = html.escape
    panels: dict = {}
    for r in record["points"]:
        panels.setdefault((r["backbone"], r["task"]), []).append(r)
    rows_of = defaultdict(list)  # (backbone, task) -> [(dataset, shown method, {n: record})]
    for (d, b, t, m), label, cells in _table_rows(record):
        if label == VS_FULL_SCRATCH:
            shown = f"{m} {VS_FULL_SCRATCH}"
        elif record.get("baseline", SCRATCH) != SCRATCH or label.endswith("(primary)"):
            shown = f"{m} vs {label}"
        else:
            shown = m
        rows_of[(b, t)].append((d, shown, cells))
    if not panels:
        return ("<p class='note'>No utility to summarise: the study has no pretrained finetune cells "
                "with matching scratch cells.</p>")
    parts = []
    any_flag = False
    for (backbone, task), pts in sorted(panels.items()):
        ns = sorted({p["n"] for p in pts})
        parts.append(f"<h3>{e(task)} · {e(backbone)} <span class='sub'>({e(pts[0]['metric'])}"
                     + (f"; trivial baseline {pts[0]['trivial']:.4g}" if pts[0]["trivial"] is not None else
                        "; no trivial baseline recorded: no signal guard") + ")</span></h3>")
        parts.append("<table><tr><th class='l'>dataset</th><th class='l'>method</th><th class='l'></th>" +
                     "".join(f"<th>n={_short_n(n)}</th>" for n in ns) + "</tr>")
        for dataset, shown, by_n in rows_of[(backbone, task)]:
            u_cells, d_cells = [], []
            for n in ns:
                p = by_n.get(n)
                if p is None:
                    u_cells.append("<td></td>")
                    d_cells.append("<td></td>")
                    continue
                any_flag |= p["still_improving"]
                inconsistent = "inconsistent" in p["flags"]
                cls = {"lower": "bound", "upper": "bound", "not_measurable": "nm", "extrapolated": "ext"}.get(
                    p["kind"], {1: "pos", -1: "neg"}.get(p["significant"], ""))
                if inconsistent:
                    cls += " warn"
                tip = [f"{p['metric']} {p['accuracy']:.4g} over {p['n_seeds']} seed(s)"]
                if p["n_scratch_equiv"] is not None and p["kind"] != "not_measurable":
                    tip.append(f"scratch-equivalent {'≥ ' if p['kind'] == 'lower' else '≤ ' if p['kind'] == 'upper' else '≈ '}"
                               f"{p['n_scratch_equiv']:.0f} labels")
                tip += [x for x in (p["reason"], p["note"]) if x]
                if inconsistent:
                    tip.append("U and Δ disagree in sign: not coloured")
                text = p["text"].replace(" †", "")
                u_cells.append(f"<td class='{cls}' title='{e('; '.join(tip))}'>{e(text)}"
                               f"{' !' if inconsistent else ''}"
                               f"{'<sup>' + _FLAG + '</sup>' if p['still_improving'] else ''}</td>")
                dsig = p["delta_ci_low"] is not None and (p["delta_ci_low"] > 0 or p["delta_ci_high"] < 0)
                d_cells.append(f"<td class='delta{' sig' if dsig else ''}'>{e(_delta_text(p))}</td>")
            parts.append(f"<tr><td class='l'>{e(_dataset_name(dataset))}</td><td class='l'>{e(shown)}</td>"
                         f"<td class='l'>U</td>" + "".join(u_cells) + "</tr>")
            parts.append("<tr><td class='l'></td><td class='l'></td><td class='l'>Δ</td>" + "".join(d_cells) + "</tr>")
        parts.append("</table>")
    foot = ("<p><sup>†</sup> computed from at least one cell (pretrained at that n, or the scratch cells "
            "its scratch-equivalent was read from) whose validation was still improving when its budget "
            "ran out, or that gained when re-run at a larger budget (<a href='#budget'>budget check</a>); "
            "see the list under <a href='#run'>What was run</a>.</p>") if any_flag else ""
    return ("<p>Green: U's whole interval is above 0; red: below 0 (only with two or more seeds, and only "
            "where U and Δ agree in sign); <b>!</b>: U and Δ disagree in sign; italic: a bound; grey n/m: not "
            "measurable (hover for the reason); ~: extrapolated past the measured range. [a, ≥b]: the interval "
            "was cut at the edge of what the scratch range can measure. Δ in bold: its interval excludes 0.</p>"
            + "".join(parts) + foot)


def _backbone_section(record: dict) -> str:
    """The backbone comparison (summary.json's ``backbone_comparison``); "" with fewer than two backbones."""
    bc = record.get("backbone_comparison")
    if not bc:
        return ""
    e = html.escape
    out = [f"<h2 id='backbones'>Backbones</h2><p>Utility of each method on each backbone "
           f"({e(', '.join(bc['backbones']))}), each against its own baseline, side by side at each label count. "
           "<b>ΔU</b>: the second backbone's U minus the first's where both are values, with a t-interval from a "
           "paired seed-level bootstrap that draws the same seeds for both backbones; <b>gain difference</b>: "
           "Δ on the second minus Δ on the first (pretrained minus baseline, in the metric's direction), a "
           "t-interval over the paired seeds, read where a U is a bound. Bold: the interval excludes 0.</p>"]
    if not bc["comparisons"]:
        out.append(f"<p class='note'>Nothing to compare: {e(bc['reason'])}.</p>")
    by: dict = {}
    for c in bc["comparisons"]:
        by.setdefault((c["task"], tuple(c["backbones"])), []).append(c)
    for (task, (a, b)), comps in sorted(by.items()):
        ns = sorted({p["n"] for c in comps for p in c["points"]})
        out.append(f"<h3>{e(task)} · {e(a)} vs {e(b)}</h3><table><tr><th class='l'>dataset</th>"
                   "<th class='l'>method</th><th class='l'></th>" +
                   "".join(f"<th>n={_short_n(n)}</th>" for n in ns) + "</tr>")
        for c in comps:
            cells = {p["n"]: p for p in c["points"]}
            for i, bb in enumerate((b, a)):
                head = (f"<td class='l'>{e(_dataset_name(c['dataset']))}</td><td class='l'>{e(c['method'])}</td>"
                        if i == 0 else "<td class='l'></td><td class='l'></td>")
                base = c["baselines"][bb]
                out.append(f"<tr>{head}<td class='l'>U {e(bb)}" + (f" vs {e(base)}" if base != SCRATCH else "") +
                           "</td>" + "".join(f"<td>{e(cells[n]['u'][bb]['text'])}</td>" if n in cells else "<td></td>"
                                             for n in ns) + "</tr>")
            for label, key in ((f"ΔU {a} − {b}", "delta_u"), ("gain difference", "gain_diff")):
                tds = []
                for n in ns:
                    p = cells.get(n)
                    if p is None:
                        tds.append("<td></td>")
                        continue
                    lo, hi = p[key + "_ci_low"], p[key + "_ci_high"]
                    sig = lo is not None and (lo > 1e-9 or hi < -1e-9)  # as findings.compare_backbones reads it
                    tds.append(f"<td class='delta{' sig' if sig else ''}'>{e(_diff_text(p, key))}</td>")
                out.append(f"<tr><td class='l'></td><td class='l'></td><td class='l'>{e(label)}</td>" + "".join(tds)
                           + "</tr>")
            cls = {"higher": "pos", "lower": "neg"}.get(c["verdict"], "")
            out.append(f"<tr><td class='l'></td><td class='l'></td><td class='l wrap {cls}' colspan='{len(ns) + 1}'>"
                       + (f"<b>{e(c['verdict'])}</b>: " if not c["sentence"].startswith(c["verdict"]) else "")
                       + f"{e(c['sentence'])}</td></tr>")
        out.append("</table>")
    if bc.get("f5"):
        out.append(f"<p>Over independent units (one per dataset and task, <a href='#findings'>F5</a>, "
                   f"<b>{e(bc['f5']['verdict'])}</b>): {e(bc['f5']['reason'])}.</p>")
    return "\n".join(out)


def _findings_section(record: dict, figs: dict) -> str:
    e = html.escape
    out = ["<h2 id='findings'>Findings</h2><p>The paper's five findings, each tested on this study: "
           "<b>supported</b>, <b>contradicted</b>, <b>inconclusive</b> (the interval spans the null, or there is "
           "none) or <b>not measured</b> (what the study lacks). Rules in <code>selfstudy.study.findings</code>.</p>",
           "<table><tr><th class='l'>finding</th><th class='l'>claim</th><th class='l'>verdict</th>"
           "<th class='l'>evidence</th></tr>"]
    for f in record["findings"]:
        out.append(f"<tr><td class='l'>{e(f['id'])}</td><td class='l wrap'>{e(f['claim'])}</td>"
                   f"<td class='l {_VERDICT_CLASS[f['verdict']]}'><b>{e(f['verdict'])}</b></td>"
                   f"<td class='l wrap'>{e(f['reason'])}</td></tr>")
    out.append("</table>")
    for f in record["findings"]:
        if not f["evidence"]:
            continue
        rows = [{k: v for k, v in ev.items() if k != "matched"} for ev in f["evidence"]]
        cols = list(dict.fromkeys(k for r in rows for k in r))
        table = ("<table><tr>" + "".join(f"<th class='l'>{e(c)}</th>" for c in cols) + "</tr>" +
                 "".join("<tr>" + "".join(f"<td class='l'>{e(_cell_text(r.get(c)))}</td>" for c in cols) + "</tr>"
                         for r in rows) + "</table>")
        fig = _img("findings_F4.png", *figs["findings_F4.png"]) if f["id"] == "F4" and "findings_F4.png" in figs else ""
        out.append(f"<details><summary>{e(f['id'])} evidence ({len(rows)} row(s))</summary>{fig}{table}</details>")
    return "\n".join(out)


def _f4_figure(f4: dict) -> bytes:
    fig, axes = _new_figure(1, 1, width=6.0, height=3.0)
    ax = axes[0]
    ev = f4["evidence"]
    x = np.arange(len(ev))
    y = np.array([r["delta_u"] for r in ev])
    lo = np.array([r["ci_low"] if r["ci_low"] is not None else r["delta_u"] for r in ev])
    hi = np.array([r["ci_high"] if r["ci_high"] is not None else r["delta_u"] for r in ev])
    ax.bar(x, y, color="#4477aa", width=0.6)
    ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="none", color="black", capsize=4)
    ax.axhline(0, color="0.4", lw=0.8)
    ax.set_xticks(x, [f"{r['factor']} ({r['pairs']} pairs)" for r in ev])
    ax.set_ylabel("ΔU, factor on − off")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _linear_section(points: list[dict], correlations: list[dict], figs: dict) -> str:
    head = "<h2>Linear probe vs finetuning</h2>"
    shown = [c for c in correlations if c["n"] >= MIN_CORR_POINTS]
    if not shown:
        return head + (f"<p>Too few paired points ({len(points)}) for a rank correlation: it needs at least "
                       f"{MIN_CORR_POINTS} (method, dataset, label count) combinations with both a linear-probe "
                       "and a finetuned result.</p>")
    e = html.escape
    out = [head, "<p class='note'>A secondary, <b>pooled</b> view: pooling over datasets and label counts lets "
                 "dataset difficulty drive both axes. The test of whether the linear probe ranks methods as "
                 "finetuning does is F3 under <a href='#findings'>Findings</a> (within-group Kendall τ and a "
                 "permutation test).</p><p>Each point is one pretrained method on one dataset at one label count: its linear-probe "
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
    counted = counted_factors(checks)
    auto = (" With <code>budget: auto</code> a cell whose doubling gained was doubled again, up to the cap; "
            "each row compares one attempt with the next (the factor column: from -> to) and "
            f"<i>counts</i> is the budget multiple whose numbers the study uses ({e(_counted_words(counted))})."
            if counted else "")
    head = ("<h2 id='budget'>Budget check</h2><p>These finetune cells were run again with their training "
            f"budget (epochs, minimum and maximum steps) multiplied by the factor shown. A cell whose "
            f"validation metric gained more than {tol:g} with the larger budget had not converged: it is "
            f"flagged <sup>{_FLAG}</sup> wherever it is used.{auto} <b>{bad} of {len(checks)}</b> gained more.</p>")
    cols = ["dataset", "backbone", "task", "method", "n", "seed", "factor", "val", "val ×", "test", "test ×",
            "gain", "steps", "steps ×", "verdict"] + (["counts"] if counted else [])
    out = [head, "<table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"]
    for t in checks:
        verdict = f"under budget {_FLAG}" if t["under_budget"] else "converged"
        vals = [_dataset_name(t["dataset"]), t["backbone"], t["task"], t["method"], t["n_labels"], t["seed"],
                _doubling(t), _cell_text(t["val"]), _cell_text(t["val_check"]),
                _cell_text(t["test"]), _cell_text(t["test_check"]), f"{t['gain']:+.4f}", t["steps"],
                t["steps_check"], verdict]
        if counted:
            vals.append(f"x{counted[t['cell_id']][0]:g}")
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


def _fname(kind: str, backbone: str, task: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{kind}_{backbone}_{task}") + ".png"


def _method_words(method: str) -> str:
    if method == "powerlaw":
        return ("a power-law fit a − b·n^(−c) of the scratch means (the only estimate past the largest scratch "
                "count, marked ~ extrapolated with the fit's back-test error)")
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
