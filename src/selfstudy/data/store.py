"""The dataset store: a dataset is a folder of ``.npy`` arrays plus ``manifest.json``.

Layout::

    <name>/
      manifest.json     generation config, its hash, package version, and for every array its shape,
                        dtype and sha256 checksum
      images.npy        uint8 (N, H, W, 3)
      label.npy         ...one file per array, first axis = image index

Arrays are written through memory maps, so a dataset far larger than RAM is written chunk by chunk (by
several processes at once, each into its own slice), and read back memory-mapped. A dataset is built in
a hidden temporary folder beside its destination and renamed into place only once every array and the
manifest are complete: an interrupted generation leaves nothing that looks like a dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from selfstudy import __version__
from selfstudy.core.io import atomic_write_text
from selfstudy.errors import UserError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
#: Split codes of the ``split`` array. ``unlabeled`` (imported images without a label) is part of the
#: pretraining pool (:meth:`Dataset.pool_indices`) but of no labeled split.
SPLITS = {"train": 0, "val": 1, "test": 2, "unlabeled": 3}
#: The splits pretraining draws its images from: val and test never enter it.
POOL = ("train", "unlabeled")


def config_hash(config: Mapping) -> str:
    """A short, stable hash of a JSON-serialisable config (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


class DatasetWriter:
    """Create a dataset folder atomically.

    ``schema`` maps an array name to ``(per_item_shape, dtype)``; every array gets ``n`` rows. Use as a
    context manager: leaving the block normally finalises (checksums, manifest, rename); an exception
    removes the temporary folder.

    Several processes can fill slices of the same arrays: pass :attr:`tmp_path` to each and call
    :func:`write_slice` there.
    """

    def __init__(self, path: str | os.PathLike, config: Mapping, schema: Mapping[str, tuple], n: int):
        if n <= 0:
            raise UserError(f"a dataset needs at least one image, got n={n}")
        self.path = Path(path)
        self.config = dict(config)
        self.n = int(n)
        self.schema = {k: (tuple(shape), np.dtype(dt)) for k, (shape, dt) in schema.items()}
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create output folder {parent}: {e.strerror}") from None
        if not os.access(parent, os.W_OK):
            raise UserError(f"output folder {parent} is not writable")
        if self.path.exists():
            raise UserError(f"{self.path} already exists; remove it or choose another --out")
        self.tmp_path = parent / f".{self.path.name}.partial-{uuid.uuid4().hex[:8]}"
        try:
            self.tmp_path.mkdir()
            for name, (shape, dtype) in self.schema.items():
                arr = np.lib.format.open_memmap(self.tmp_path / f"{name}.npy", mode="w+", dtype=dtype,
                                                shape=(self.n, *shape))
                del arr
        except OSError as e:
            self.abort()
            raise UserError(f"cannot write a dataset in {parent}: {e.strerror or e}") from None

    def write(self, start: int, batch: Mapping[str, np.ndarray]) -> None:
        write_slice(self.tmp_path, start, batch)

    def finalize(self, extra: Mapping | None = None) -> Path:
        arrays = {}
        for name, (shape, dtype) in self.schema.items():
            f = self.tmp_path / f"{name}.npy"
            arrays[name] = {"shape": [self.n, *shape], "dtype": dtype.str, "sha256": file_sha256(f)}
        manifest = {
            "format": FORMAT_VERSION,
            "selfstudy_version": __version__,
            "config": self.config,
            "config_hash": config_hash(self.config),
            "n": self.n,
            "arrays": arrays,
        }
        if extra:
            manifest.update(extra)
        atomic_write_text(self.tmp_path / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        os.replace(self.tmp_path, self.path)
        return self.path

    def abort(self) -> None:
        shutil.rmtree(self.tmp_path, ignore_errors=True)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finalize()
        else:
            self.abort()


def write_slice(folder: str | os.PathLike, start: int, batch: Mapping[str, np.ndarray]) -> None:
    """Write rows ``start : start + len`` of each array in ``batch`` into the arrays under ``folder``."""
    folder = Path(folder)
    for name, values in batch.items():
        arr = np.load(folder / f"{name}.npy", mmap_mode="r+")
        arr[start:start + len(values)] = values
        del arr


class Dataset:
    """A finished dataset folder, memory-mapped. ``ds["images"]`` is an ``np.memmap``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        mf = self.path / MANIFEST
        if not mf.is_file():
            raise UserError(f"{self.path} is not a selfstudy dataset (no {MANIFEST}); "
                            f"make one with `selfstudy render`")
        try:
            self.manifest = json.loads(mf.read_text())
            self.n = int(self.manifest["n"])
            self.arrays_meta = self.manifest["arrays"]
        except (ValueError, KeyError) as e:
            raise UserError(f"{mf} is corrupted ({e}); regenerate the dataset") from None
        self._cache: dict[str, np.ndarray] = {}

    @property
    def config(self) -> dict:
        return self.manifest["config"]

    @property
    def names(self) -> list[str]:
        return list(self.arrays_meta)

    def __len__(self) -> int:
        return self.n

    def __contains__(self, name: str) -> bool:
        return name in self.arrays_meta

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.arrays_meta:
            raise UserError(f"dataset {self.path} has no array {name!r}; it has: {', '.join(self.names)}")
        if name not in self._cache:
            meta = self.arrays_meta[name]
            try:
                arr = np.load(self.path / f"{name}.npy", mmap_mode="r")
            except (OSError, ValueError) as e:
                raise UserError(f"array {name!r} of {self.path} cannot be read ({e}); "
                                f"run `selfstudy data verify {self.path}`") from None
            if list(arr.shape) != meta["shape"] or arr.dtype.str != meta["dtype"]:
                raise UserError(f"array {name!r} of {self.path} is {arr.dtype.str}{list(arr.shape)}, "
                                f"the manifest says {meta['dtype']}{meta['shape']}; the dataset is corrupted")
            self._cache[name] = arr
        return self._cache[name]

    def indices(self, split: str) -> np.ndarray:
        """Image indices of ``split`` (``train``, ``val``, ``test`` or ``unlabeled``), ascending."""
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
        return np.flatnonzero(np.asarray(self["split"]) == SPLITS[split])

    def pool_indices(self) -> np.ndarray:
        """Image indices pretraining may see (:data:`POOL`: the labeled train split and the unlabeled
        images), ascending; the train split alone on a rendered dataset."""
        return np.flatnonzero(np.isin(np.asarray(self["split"]), [SPLITS[s] for s in POOL]))

    def verify(self, names: Iterable[str] | None = None) -> None:
        """Check every array's checksum; raise :class:`UserError` naming the corrupted ones."""
        bad = []
        for name in names or self.names:
            f = self.path / f"{name}.npy"
            if not f.is_file():
                bad.append(f"{name} (missing)")
            elif file_sha256(f) != self.arrays_meta[name]["sha256"]:
                bad.append(f"{name} (checksum mismatch)")
        if bad:
            raise UserError(f"dataset {self.path} is corrupted: {', '.join(bad)}")

    def info(self) -> dict:
        return {
            "path": str(self.path),
            "n": self.n,
            "config": self.config,
            "config_hash": self.manifest.get("config_hash"),
            "selfstudy_version": self.manifest.get("selfstudy_version"),
            "arrays": {k: f"{v['dtype']} {tuple(v['shape'])}" for k, v in self.arrays_meta.items()},
        }


def open_dataset(path: str | os.PathLike) -> Dataset:
    return Dataset(path)
