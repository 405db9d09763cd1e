"""Studies on a dataset folder written by ``selfstudy data import`` (the person's own images).

A spec names such a folder with ``datasets: {path: DIR}`` instead of factor strings. What a study
needs from it is read here, from its ``manifest.json`` alone (no array is opened):

- its **name** (the folder's name: how cells, the summary and the report call it) and its identity,
  the manifest's ``config_hash`` (it changes with the files' contents and the import options; the
  absolute path is *not* part of any cell id, so a moved folder keeps its results);
- its resolution, its classes in label-id order and their per-split counts, the unlabeled pool.

Only classification applies to imported data (it has class labels, no pose or per-pixel maps).
Label counts are checked against the labeled training split; on imbalanced data the nested,
stratified subsets of :func:`selfstudy.data.subsets.nested_balanced` take every image of a class
smaller than its balanced share and split the rest among the others (the plan notes where).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from selfstudy.errors import UserError

MANIFEST = "manifest.json"
#: ``labels: auto``: how many log-spaced label counts, and the fewest labels per class at the smallest.
AUTO_LABEL_COUNTS = 5
AUTO_MIN_PER_CLASS = 2


@dataclass(frozen=True)
class ImportedData:
    """What a study reads from an imported dataset's manifest.

    class_counts: ``(name, train, val, test)`` per class in label-id order; unlabeled: images of the
    unlabeled split (pretraining pool = unlabeled + train); skipped/left_out: as the import counted.
    """

    path: str
    name: str
    config_hash: str
    res: int
    class_counts: tuple[tuple[str, int, int, int], ...]
    unlabeled: int = 0
    skipped: int = 0
    left_out: int = 0

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c[0] for c in self.class_counts)

    @property
    def train(self) -> int:
        """Images of the labeled training split: the most labels a cell can use."""
        return sum(c[1] for c in self.class_counts)

    @property
    def smallest(self) -> tuple[str, int]:
        """(name, training images) of the class with the fewest training images."""
        c = min(self.class_counts, key=lambda c: c[1])
        return c[0], c[1]

    def identity(self) -> dict:
        """What a cell id hashes of this dataset: its kind and the manifest's config hash."""
        return {"kind": "import", "config_hash": self.config_hash}

    def imbalance_note(self, counts) -> str:
        """A plan note for the label counts at which class-balanced subsets are not possible ("" if none).
        The whole labeled training split is not one of them: a cell at that count uses every training
        image, whatever the class sizes (near-equal classes, e.g. 122-129 images each, are no note)."""
        k = len(self.class_counts)
        name, small = self.smallest
        over = [n for n in counts if -(-n // k) > small and n < self.train]
        if not over:
            return ""
        return (f"dataset {self.name} is imbalanced (class {name!r} has {small} training images): at "
                f"{', '.join(map(str, over))} labels the subsets take every image of a class smaller than "
                f"its share and split the rest among the others (still nested and stratified); the report "
                f"lists the class counts")

    def auto_labels(self) -> tuple[int, ...]:
        """``labels: auto``: :data:`AUTO_LABEL_COUNTS` log-spaced counts from a few per class up to the
        whole labeled training split (fewer when the split is small)."""
        return auto_label_counts(self.train, len(self.class_counts))

    def lines(self) -> list[str]:
        """The dataset and its class counts as text lines (summary.txt, the report's details)."""
        tot = [sum(c[i] for c in self.class_counts) for i in (1, 2, 3)]
        out = [f"dataset {self.name} (imported, {self.res} px, config {self.config_hash}): "
               f"{len(self.class_counts)} classes, {sum(tot)} labeled (train {tot[0]}, val {tot[1]}, "
               f"test {tot[2]}), {self.unlabeled} unlabeled; pretraining pool {self.unlabeled + tot[0]}"
               + (f"; {self.skipped} unreadable file(s) skipped" if self.skipped else "")]
        width = max([len(c[0]) for c in self.class_counts] + [5])
        out.append(f"  {'class':{width}}  {'train':>6}  {'val':>5}  {'test':>5}")
        for name, tr, va, te in self.class_counts:
            out.append(f"  {name:{width}}  {tr:>6}  {va:>5}  {te:>5}")
        return out

    def table(self) -> list[dict]:
        """The class counts as rows (``class, train, val, test``) for the report."""
        return [{"class": n, "train": tr, "val": va, "test": te} for n, tr, va, te in self.class_counts]


def auto_label_counts(train: int, classes: int, k: int = AUTO_LABEL_COUNTS) -> tuple[int, ...]:
    """Up to ``k`` log-spaced label counts ending at ``train``, starting at
    ``max(AUTO_MIN_PER_CLASS * classes, train / 32)`` (distinct, rounded)."""
    lo = max(AUTO_MIN_PER_CLASS * classes, math.ceil(train / 32), 1)
    if train <= lo:
        return (int(train),)
    ratio = (train / lo) ** (1 / (k - 1))
    counts = sorted({int(round(lo * ratio ** i)) for i in range(k)} | {int(train)})
    return tuple(c for c in counts if 1 <= c <= train)


def read_imported(path, where: str = "study spec") -> ImportedData:
    """The :class:`ImportedData` of the folder ``path``; :class:`UserError` (one line) if it is not a
    dataset folder that ``selfstudy data import`` wrote."""
    folder = Path(str(path)).expanduser()
    hint = "give a folder written by `selfstudy data import SOURCE --out DIR`"
    if not folder.is_dir():
        raise UserError(f"{where}: datasets.path {str(path)!r} is not a folder; {hint}")
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise UserError(f"{where}: datasets.path {str(path)!r} has no {MANIFEST} (an unfinished import?); {hint}")
    try:
        m = json.loads(manifest.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{where}: cannot read {manifest}: {e}") from None
    cfg = m.get("config") if isinstance(m, dict) else None
    if not isinstance(cfg, dict) or cfg.get("kind") != "import":
        raise UserError(f"{where}: datasets.path {str(path)!r} is not an imported dataset (rendered data is "
                        f"named by datasets.factors, e.g. [TCVL]); {hint}")
    info = m.get("import") or {}
    counts = info.get("class_counts") or {}
    names = [str(n) for n in cfg.get("class_names") or []]
    if not names or any(n not in counts for n in names):
        raise UserError(f"{where}: {manifest} lists no class counts for its classes; re-import the folder")
    return ImportedData(
        path=str(folder.resolve()), name=folder.resolve().name, config_hash=str(m.get("config_hash")),
        res=int(cfg.get("res") or m["arrays"]["images"]["shape"][1]),
        class_counts=tuple((n, int(counts[n]["train"]), int(counts[n]["val"]), int(counts[n]["test"]))
                           for n in names),
        unlabeled=int(info.get("unlabeled") or 0), skipped=int(info.get("skipped") or 0),
        left_out=int(info.get("left_out") or 0))


def classification_only(task) -> bool:
    """Whether ``task`` (a :class:`~selfstudy.tasks.Task`) is image classification on ``label``, the
    only task imported data can pose."""
    return not task.dense and tuple(getattr(task, "required_arrays", ())) == ("label",)
