"""Images on disk -> a dataset folder of the store (``selfstudy data import``).

Two sources:

- a **folder** with one sub-folder per class (``cats/``, ``dogs/``; images anywhere below each), the
  class ids in sorted order of the folder names (numeric order when every name is an integer);
- a **CSV** with the columns ``path`` (relative to the CSV's folder, or absolute) and ``label`` (a class
  name; empty = unlabeled), and optionally ``group`` (images that must share a split) and ``split``
  (``train``/``val``/``test``, empty = drawn). Other columns are ignored.

Either may add ``unlabeled``: a folder of images without labels. Every non-hidden file is read and
decoded (:func:`selfstudy.data.decode.decode_image`); splits are drawn by
:func:`selfstudy.data.splits.assign_splits`.

The dataset holds ``images`` uint8 (N, R, R, 3), ``label`` int64 (class id, -1 unlabeled) and
``split`` uint8 (0 train, 1 val, 2 test, 3 unlabeled), labeled images first, each part in a seeded
order. Besides the arrays: ``files.csv`` (every stored image's source path, class, split, group and
sha256) and ``import_log.txt`` (the files left out and why). The manifest's ``config`` says how the
dataset was made (``kind: import``, the options, ``class_names``, a ``content`` hash of the inputs) and
``import`` holds the counts: ``class_counts`` ({class: {train, val, test}}), ``unlabeled``, ``skipped``.

Atomic: images are decoded into a hidden scratch folder, then written through
:class:`~selfstudy.data.store.DatasetWriter`; an interruption or an error leaves only hidden
``.NAME.*`` folders, which are removed on the way out when Python can (nothing that looks complete).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selfstudy.data.decode import FITS, DecodeError, decode_image
from selfstudy.data.splits import LEFT_OUT, UNLABELED, assign_splits
from selfstudy.data.store import SPLITS, DatasetWriter
from selfstudy.errors import UserError

#: Bumped when the same inputs would give different arrays.
IMPORTER_VERSION = 1
CSV_COLUMNS = ("path", "label")
CSV_OPTIONAL = ("group", "split")
FILES, LOG = "files.csv", "import_log.txt"
_BLOCK = 256  # images decoded per block (bounds memory; the fail-fast check runs per block)
_SPLIT_NAMES = {v: k for k, v in SPLITS.items()}
_ORDER_STREAM = 0x1A9E


@dataclass
class Item:
    """One input image: where it is, how to name it in messages, its class id (-1: unlabeled), its
    group (None: its own) and its given split code (-1: drawn)."""

    path: Path
    name: str
    label: int
    group: str | None = None
    split: int = -1


@dataclass
class Source:
    """What :func:`collect_folder` / :func:`collect_csv` found: the items and the class names."""

    items: list[Item]
    class_names: list[str]
    kind: str
    root: Path
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportResult:
    path: Path
    n: int
    class_counts: dict[str, dict[str, int]]
    unlabeled: int
    skipped: list[tuple[str, str]]
    left_out: int
    seconds: float

    def summary(self) -> str:
        """A few lines for a person: sizes, splits per class, what was left out."""
        totals = {s: sum(c[s] for c in self.class_counts.values()) for s in ("train", "val", "test")}
        lines = [f"imported {self.n} images into {self.path} in {self.seconds:.1f} s "
                 f"({self.n / max(self.seconds, 1e-9):.0f} images/s)",
                 f"labeled   {sum(totals.values())} in {len(self.class_counts)} classes: "
                 + ", ".join(f"{k} {v}" for k, v in totals.items()),
                 f"unlabeled {self.unlabeled} (pretraining pool: unlabeled + train = "
                 f"{self.unlabeled + totals['train']})"]
        width = max(len(c) for c in self.class_counts)
        for c, v in self.class_counts.items():
            lines.append(f"  {c:<{width}}  train {v['train']:>6}  val {v['val']:>5}  test {v['test']:>5}")
        if self.skipped:
            lines.append(f"skipped   {len(self.skipped)} unreadable file(s), listed in {self.path / LOG}")
        if self.left_out:
            lines.append(f"left out  {self.left_out} unlabeled image(s) whose group is in val or test "
                         f"(listed in {self.path / LOG})")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ sources
def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _files_under(folder: Path) -> list[Path]:
    """Every non-hidden file below ``folder``, sorted by path (hidden: any part starting with '.')."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and _visible(p, folder))


def collect_unlabeled(folder: str | os.PathLike) -> list[Item]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--unlabeled {folder} is not a folder")
    return [Item(p, str(Path(folder.name) / p.relative_to(folder)), -1) for p in _files_under(folder)]


def collect_folder(root: str | os.PathLike, unlabeled: str | os.PathLike | None = None) -> Source:
    """Items of a folder with one sub-folder per class (class ids: the folder names in
    :func:`_class_order`)."""
    root = Path(root)
    skip = Path(unlabeled).resolve() if unlabeled is not None else None
    classes = _class_order({p.name for p in root.iterdir()
                            if p.is_dir() and not p.name.startswith(".") and p.resolve() != skip})
    if not classes:
        raise UserError(f"{root} has no class sub-folders; put each class's images in a sub-folder named "
                        f"after the class (e.g. {root}/cat/1.jpg), or list them in a CSV with path,label")
    items = []
    for cid, c in enumerate(classes):
        files = _files_under(root / c)
        if not files:
            raise UserError(f"class folder {root / c} holds no files; add its images or remove the folder")
        items += [Item(p, str(p.relative_to(root)), cid) for p in files]
    loose = [p.name for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
    notes = [f"ignored {len(loose)} file(s) directly in {root} (not in a class folder)"] if loose else []
    if unlabeled is not None:
        items += collect_unlabeled(unlabeled)
    return Source(items, classes, "folder", root, notes)


def _class_order(names: set[str]) -> list[str]:
    """Sorted class names; numerically when every name is an integer (so 2 comes before 10)."""
    try:
        return sorted(names, key=lambda s: (int(s), s))
    except ValueError:
        return sorted(names)


def collect_csv(path: str | os.PathLike, unlabeled: str | os.PathLike | None = None) -> Source:
    """Items of a CSV with ``path,label[,group,split]`` (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read CSV {path}: {getattr(e, 'strerror', None) or e}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise UserError(f"CSV {path} has no {' or '.join(repr(c) for c in missing)} column; it needs the "
                        f"columns path,label (optional: group, split), found: {', '.join(header) or 'none'}")
    reader.fieldnames = header
    base = path.parent
    rows, seen = [], {}
    split_codes = {"train": SPLITS["train"], "val": SPLITS["val"], "test": SPLITS["test"]}
    for line, rec in enumerate(reader, start=2):
        p = (rec.get("path") or "").strip()
        if not p:
            raise UserError(f"CSV {path} line {line}: empty path; every row needs one")
        label = (rec.get("label") or "").strip()
        group = (rec.get("group") or "").strip() or None
        split = (rec.get("split") or "").strip().lower()
        if split and split not in split_codes:
            raise UserError(f"CSV {path} line {line}: unknown split {split!r}; allowed: train, val, test "
                            f"or empty (drawn)")
        if not label and split in ("val", "test"):
            raise UserError(f"CSV {path} line {line}: an unlabeled image (empty label) cannot be in the "
                            f"{split} split; leave its split empty (unlabeled images go to pretraining)")
        full = Path(p) if Path(p).is_absolute() else base / p
        key = os.path.normpath(str(full))
        if key in seen:
            raise UserError(f"CSV {path} line {line}: {p} is listed twice (first on line {seen[key]}); "
                            f"each image may appear once")
        seen[key] = line
        rows.append((full, p, label, group, split_codes[split] if split and label else -1))
    if not rows:
        raise UserError(f"CSV {path} lists no images")
    classes = _class_order({r[2] for r in rows if r[2]})
    ids = {c: i for i, c in enumerate(classes)}
    items = [Item(full, p, ids[label] if label else -1, group, split) for full, p, label, group, split in rows]
    if unlabeled is not None:
        items += collect_unlabeled(unlabeled)
    return Source(items, classes, "csv", path)


def collect(source: str | os.PathLike, unlabeled: str | os.PathLike | None = None) -> Source:
    source = Path(source)
    if source.is_dir():
        return collect_folder(source, unlabeled)
    if source.is_file() and source.suffix.lower() == ".csv":
        return collect_csv(source, unlabeled)
    if source.is_file():
        raise UserError(f"{source} is neither a folder nor a .csv file; give a folder with one sub-folder "
                        f"per class, or a CSV with columns path,label")
    raise UserError(f"{source} does not exist; give a folder with one sub-folder per class, or a CSV")


# ------------------------------------------------------------------------------------------- decode
def _read(item: Item, res: int, fit: str) -> tuple[np.ndarray | None, str, str]:
    """(image or None, sha256 of the file or '', why it failed or '')."""
    try:
        data = item.path.read_bytes()
    except FileNotFoundError:
        return None, "", "file not found"
    except OSError as e:
        return None, "", f"cannot be read ({e.strerror or e})"
    sha = hashlib.sha256(data).hexdigest()
    try:
        return decode_image(data, res, fit), sha, ""
    except DecodeError as e:
        return None, sha, str(e)


def default_workers() -> int:
    """Decoding threads: one per core this process may use (Pillow decodes without the GIL)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _check_options(res, fit, seed, val_frac, test_frac, workers) -> None:
    def integer(v, lo):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lo

    if not integer(res, 8) or res > 1024:
        raise UserError(f"--res {res!r} is not allowed; it must be an integer in 8..1024 (pixels)")
    if fit not in FITS:
        raise UserError(f"fit {fit!r} is not allowed; allowed: {', '.join(FITS)}")
    if not integer(seed, 0):
        raise UserError(f"--seed {seed!r} is not allowed; it must be an integer >= 0")
    for name, v in (("--val-frac", val_frac), ("--test-frac", test_frac)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
            raise UserError(f"{name} {v!r} is not allowed; it must be a number in (0, 1)")
    if val_frac + test_frac >= 1:
        raise UserError(f"--val-frac {val_frac} + --test-frac {test_frac} must be below 1 (train needs images)")
    if workers is not None and not integer(workers, 1):
        raise UserError(f"--workers {workers!r} is not allowed; it must be an integer >= 1")


def import_images(source: str | os.PathLike, out: str | os.PathLike, *,
                  unlabeled: str | os.PathLike | None = None, res: int = 64, fit: str = "crop",
                  seed: int = 0, val_frac: float = 0.15, test_frac: float = 0.15, skip_bad: bool = False,
                  workers: int | None = None, progress: bool = True) -> ImportResult:
    """Import ``source`` (a class-folder tree or a CSV) into the dataset folder ``out``.

    Args:
        unlabeled: a folder of unlabeled images for the pretraining pool.
        res: side of the stored square images, pixels.
        fit: ``crop`` (centre square) or ``pad`` (black borders).
        seed: seeds the split draw and the stored order.
        val_frac, test_frac: each class's shares for val and test.
        skip_bad: leave unreadable files out (listed in ``import_log.txt``) instead of stopping.
        workers: decoding threads (default: one per core).
        progress: a progress bar with images/s on stderr.

    Raises:
        UserError: bad options or input (the message names the first bad file, row or class); nothing
        is left behind that looks like a dataset.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    _check_options(res, fit, seed, val_frac, test_frac, workers)
    out = Path(out)
    if out.exists():
        raise UserError(f"{out} already exists; remove it or choose another --out")
    src = collect(source, unlabeled)
    items = src.items
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder {out.parent}: {e.strerror}") from None
    if not os.access(out.parent, os.W_OK):
        raise UserError(f"output folder {out.parent} is not writable")

    scratch = out.parent / f".{out.name}.scan-{uuid.uuid4().hex[:8]}"
    try:
        scratch.mkdir()
        decoded = np.lib.format.open_memmap(scratch / "images.npy", mode="w+", dtype=np.uint8,
                                            shape=(len(items), res, res, 3))
        ok = np.zeros(len(items), dtype=bool)
        shas: list[str] = [""] * len(items)
        bad: list[tuple[str, str]] = []
        bar = tqdm(total=len(items), unit="img", desc=f"import {out.name}", disable=not progress,
                   file=sys.stderr, smoothing=0.1, dynamic_ncols=True)
        with bar, ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
            for start in range(0, len(items), _BLOCK):
                block = items[start:start + _BLOCK]
                got = list(pool.map(lambda it: _read(it, res, fit), block))
                for j, (img, sha, why) in enumerate(got):
                    shas[start + j] = sha
                    ok[start + j] = img is not None
                    if img is None:
                        bad.append((items[start + j].name, why))
                blank = np.zeros((res, res, 3), np.uint8)
                decoded[start:start + len(block)] = np.stack([g[0] if g[0] is not None else blank for g in got])
                if bad and not skip_bad:
                    name, why = bad[0]
                    raise UserError(f"cannot import {name}: {why}; fix or remove it, or pass --skip-bad to "
                                    f"leave unreadable files out (they are listed in {LOG})")
                bar.update(len(block))
        keep = np.flatnonzero(ok)
        if not len(keep):
            raise UserError(f"none of the {len(items)} files of {source} could be read as an image")
        kept = [items[i] for i in keep]
        labels = np.array([it.label for it in kept], dtype=np.int64)
        if not (labels >= 0).any():
            raise UserError(f"{source} has no labeled images that could be read; finetuning needs labels")
        split = assign_splits(labels, [it.group for it in kept], np.array([it.split for it in kept]),
                              val_frac, test_frac, seed, src.class_names)
        # Stored order: labeled images first, then unlabeled, each in a seeded order (so a prefix of
        # the pool, as `pretrain --num-images` takes, is not one class).
        rng = np.random.default_rng([_ORDER_STREAM, int(seed)])
        lab_rows = np.flatnonzero((labels >= 0) & (split != LEFT_OUT))
        unl_rows = np.flatnonzero(split == UNLABELED)
        order = np.concatenate([rng.permutation(lab_rows), rng.permutation(unl_rows)]).astype(np.int64)
        left_out = [kept[i].name for i in np.flatnonzero(split == LEFT_OUT)]

        content = hashlib.sha256()
        for i in order:
            it = kept[i]
            content.update(f"{it.name}\0{it.label}\0{it.group}\0{int(split[i])}\0{shas[keep[i]]}\n".encode())
        config = {
            "kind": "import", "importer": IMPORTER_VERSION, "source": str(Path(source).resolve()),
            "source_kind": src.kind, "unlabeled_source": str(Path(unlabeled).resolve()) if unlabeled else None,
            "res": int(res), "fit": fit, "seed": int(seed), "val_frac": float(val_frac),
            "test_frac": float(test_frac), "class_names": list(src.class_names),
            "content": content.hexdigest()[:16],
        }
        schema = {"images": ((res, res, 3), np.uint8), "label": ((), np.int64), "split": ((), np.uint8)}
        class_counts = {c: {s: int(((labels == k) & (split == SPLITS[s])).sum()) for s in ("train", "val", "test")}
                        for k, c in enumerate(src.class_names)}
        empty = [c for c, v in class_counts.items() if not sum(v.values())]
        if empty:
            raise UserError(f"class(es) {', '.join(empty)} have no readable images; add some or remove them")
        n_unl = int(len(unl_rows))

        writer = DatasetWriter(out, config, schema, len(order))
        try:
            for s in range(0, len(order), 4096):
                rows = order[s:s + 4096]
                writer.write(s, {"images": decoded[keep[rows]], "label": labels[rows],
                                 "split": split[rows].astype(np.uint8)})
            _write_files_csv(writer.tmp_path / FILES, kept, order, labels, split, src.class_names, shas, keep)
            _write_log(writer.tmp_path / LOG, bad, left_out, src.notes)
            extra = {"import": {"class_counts": class_counts, "unlabeled": n_unl, "skipped": len(bad),
                                "left_out": len(left_out), "files": FILES, "log": LOG}}
            writer.finalize(extra)
        except BaseException:
            writer.abort()
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return ImportResult(out, len(order), class_counts, n_unl, bad, len(left_out), time.perf_counter() - t0)


def _write_files_csv(path: Path, kept, order, labels, split, class_names, shas, keep) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "path", "class", "label", "split", "group", "sha256"])
        for idx, i in enumerate(order):
            it = kept[i]
            w.writerow([idx, it.name, class_names[it.label] if it.label >= 0 else "", int(labels[i]),
                        _SPLIT_NAMES[int(split[i])], it.group or "", shas[keep[i]]])


def _write_log(path: Path, bad, left_out, notes) -> None:
    lines = [f"# selfstudy data import: {len(bad)} unreadable file(s) skipped, "
             f"{len(left_out)} unlabeled image(s) left out"]
    lines += [f"skipped\t{name}\t{why}" for name, why in bad]
    lines += [f"left out\t{name}\tunlabeled, and its group is in val or test" for name in left_out]
    lines += [f"note\t{n}" for n in notes]
    path.write_text("\n".join(lines) + "\n")
