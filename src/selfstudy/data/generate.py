"""Dataset generation: render a whole dataset into the store, over several processes.

A dataset is defined by a :class:`DatasetConfig`; the same config gives the same bytes, whatever the
number of worker processes, so a dataset is named by its config hash and made once
(:func:`ensure_dataset`).

How the images are organised:

* **Chunks.** Images are cut into chunks of ``chunk`` consecutive images; chunk ``c`` draws all of its
  randomness from a generator seeded by ``(seed, c)``, so any worker can render any chunk. Workers
  (separate processes, one OpenGL context each) render whole chunks and write them straight into the
  dataset's temporary folder.
* **Model groups.** Like the paper, one draw of object model(s) is reused for ``reuse`` consecutive
  images (10 single-object, 20 multi-object); pose noise, materials, layout and light are drawn per
  image.
* **Splits by model** (the paper's 10/1/1): model ids ``m`` of a class with ``m % 12 < 10`` are
  training shapes, ``m % 12 == 10`` validation and ``m % 12 == 11`` test, for every dataset and seed, so
  a test shape is never seen in training. Model group ``g`` belongs to the split of
  ``GROUP_SPLITS[g % 12]`` (10 train, 1 val, 1 test: 5/6 of the images train, 1/12 val, 1/12 test; the
  val and test groups come early, so even a 30-image dataset has all three) and draws its models from
  that split only.
* **Class colours** (factor C = 0): one random HSV reference per class, from the dataset seed.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

import numpy as np

from selfstudy.data.store import SPLITS, DatasetWriter, config_hash, open_dataset, write_slice
from selfstudy.errors import UserError
from selfstudy.factors import Factors
from selfstudy.scene.classes import CLASSES, NUM_CLASSES
from selfstudy.scene.pose import front_angles, matrix_to_euler, pose_class
from selfstudy.scene.render import Rendered, Renderer, check_render_settings
from selfstudy.scene.sampler import MULTI_OBJECTS, class_colours, sample_scenes
from selfstudy.scene.shapes import build_model

#: Bump when the generator changes the bytes a config produces: it is part of every config hash.
GENERATOR_VERSION = 1
#: The paper's 12 buckets: 10 train, 1 val, 1 test.
SPLIT_BUCKETS = 12
_TRAIN, _VAL, _TEST = SPLITS["train"], SPLITS["val"], SPLITS["test"]
#: Split of model id m: MODEL_SPLITS[m % 12].
MODEL_SPLITS = np.array([_TRAIN] * 10 + [_VAL, _TEST], dtype=np.uint8)
#: Split of model group g: GROUP_SPLITS[g % 12].
GROUP_SPLITS = np.array([_TRAIN, _VAL, _TEST] + [_TRAIN] * 9, dtype=np.uint8)
_SPLIT_NAMES = {"train": _TRAIN, "val": _VAL, "test": _TEST}
_COLOUR_STREAM, _CHUNK_STREAM = 0, 1


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


@dataclass(frozen=True)
class DatasetConfig:
    """Everything that determines a dataset's bytes.

    factors: T, C, V, L as bits or letters (``"1111"``, ``"TCVL"``, ``"-CV-"``); stored as bits.
    n: images. res: image side in pixels, a multiple of 8 in [32, 256] (default 64 single-object, 128
    multi-object). multi: 4-object scenes instead of single objects. seed: the dataset seed.
    models_per_class: distinct shapes per class (>= 12: each split needs one). supersample: RGB is
    rendered at ``supersample * res`` and box-averaged. reuse: consecutive images sharing their
    model(s) (default 10 single, 20 multi). chunk: images per chunk of randomness (a multiple of reuse).
    """

    factors: str = "1111"
    n: int = 100_000
    res: int | None = None
    multi: bool = False
    seed: int = 0
    models_per_class: int = 240
    supersample: int = 2
    reuse: int | None = None
    chunk: int = 1000

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "factors", Factors.parse(self.factors).bits)
        if not isinstance(self.multi, bool):
            raise UserError(f"multi must be true or false, got {self.multi!r}")
        if self.res is None:
            set_(self, "res", 128 if self.multi else 64)
        if self.reuse is None:
            set_(self, "reuse", 20 if self.multi else 10)
        if not _is_int(self.n) or self.n <= 0:
            raise UserError(f"bad image count n={self.n!r}: it must be a whole number >= 1")
        check_render_settings(self.res, self.supersample)
        if not _is_int(self.seed) or self.seed < 0:
            raise UserError(f"bad seed {self.seed!r}: it must be a whole number >= 0")
        if not _is_int(self.models_per_class) or self.models_per_class < SPLIT_BUCKETS:
            raise UserError(f"bad models_per_class {self.models_per_class!r}: it must be a whole number "
                            f">= {SPLIT_BUCKETS} (train, val and test each need a model)")
        if not _is_int(self.reuse) or self.reuse < 1:
            raise UserError(f"bad reuse {self.reuse!r}: it must be a whole number >= 1")
        if not _is_int(self.chunk) or self.chunk < 1 or self.chunk % self.reuse:
            raise UserError(f"bad chunk {self.chunk!r}: it must be a positive multiple of reuse={self.reuse}")
        for f in fields(self):  # numpy integers would not serialise to JSON
            value = getattr(self, f.name)
            if _is_int(value):
                set_(self, f.name, int(value))

    @property
    def objects(self) -> int:
        """Objects per scene."""
        return MULTI_OBJECTS if self.multi else 1

    def to_dict(self) -> dict:
        return {**asdict(self), "generator": GENERATOR_VERSION}

    @property
    def chunks(self) -> int:
        """Chunks of randomness (:func:`chunk_scenes`) the dataset is drawn in."""
        return -(-self.n // self.chunk)

    def split_sizes(self) -> dict[str, int]:
        """Images of each split, ``{"train", "val", "test"}``, without rendering: model group ``g`` of
        ``reuse`` consecutive images (the last one maybe shorter) is in split ``GROUP_SPLITS[g % 12]``."""
        counts = self.class_counts() if not self.multi else None
        if counts is not None:
            return {name: int(c.sum()) for name, c in counts.items()}
        groups = -(-self.n // self.reuse)
        sizes = np.full(groups, self.reuse, dtype=np.int64)
        sizes[-1] = self.n - self.reuse * (groups - 1)
        split = GROUP_SPLITS[np.arange(groups) % SPLIT_BUCKETS]
        return {name: int(sizes[split == code].sum()) for name, code in _SPLIT_NAMES.items()}

    def class_counts(self) -> dict[str, np.ndarray] | None:
        """Images of each object class in each split, ``{"train": (NUM_CLASSES,) int64, ...}``, found by
        drawing only the classes of each chunk (:func:`chunk_groups`, cheap: no scene, no render);
        None for multi-object scenes, which have no per-image class."""
        if self.multi:
            return None
        out = {name: np.zeros(NUM_CLASSES, dtype=np.int64) for name in _SPLIT_NAMES}
        for c in range(self.chunks):
            _, split, classes, per_image = chunk_groups(self, c)
            img_split, img_class = split[per_image], classes[per_image, 0]
            for name, code in _SPLIT_NAMES.items():
                out[name] += np.bincount(img_class[img_split == code], minlength=NUM_CLASSES)
        return out

    def hash(self) -> str:
        return config_hash(self.to_dict())

    def default_name(self) -> str:
        """E.g. ``tcvl-single-64px-n100000-<hash>``; an off factor is written ``0`` (``0cv0-...``)."""
        letters = "".join(c.lower() if c != "-" else "0" for c in Factors.parse(self.factors).letters)
        kind = "multi" if self.multi else "single"
        return f"{letters}-{kind}-{self.res}px-n{self.n}-{self.hash()}"


def default_root() -> Path:
    """Where datasets live: ``$SELFSTUDY_DATA`` or ``./data/datasets``."""
    return Path(os.environ.get("SELFSTUDY_DATA") or "data/datasets")


def schema(cfg: DatasetConfig) -> dict:
    """Array name -> (per-image shape, dtype), as in docs/DESIGN.md."""
    r, k = cfg.res, cfg.objects
    per = () if k == 1 else (k,)
    s = {
        "images": ((r, r, 3), np.uint8),
        "depth": ((r, r), np.float16),
        "segmentation": ((r, r), np.uint8),
        "instance": ((r, r), np.uint8),
        "label": ((), np.int64),
        "model_id": (per, np.int32),
        "split": ((), np.uint8),
        "rotation": (per + (3, 3), np.float32),
        "euler": (per + (3,), np.float32),
        "pose_class": (per, np.int64),
        "azimuth": (per, np.float32),
        "elevation": (per, np.float32),
        "light": ((4,), np.float32),
        "colour": (per + (3,), np.float32),
    }
    if cfg.multi:
        s["classes"] = ((k,), np.int64)
    return s


@lru_cache(maxsize=None)
def split_models(split: int, models_per_class: int) -> np.ndarray:
    """Model ids (ascending) of split 0 train / 1 val / 2 test among ``0 .. models_per_class - 1``."""
    ids = np.arange(models_per_class)
    return ids[MODEL_SPLITS[ids % SPLIT_BUCKETS] == split]


def colour_reference(seed: int) -> np.ndarray:
    """The dataset's class colour reference, (NUM_CLASSES, 3) HSV (factor C = 0)."""
    return class_colours(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_COLOUR_STREAM,))))


def chunk_groups(cfg: DatasetConfig, c: int):
    """The first draws of chunk ``c``, shared by rendering and :meth:`DatasetConfig.class_counts`:
    ``(rng, split of each model group, (groups, objects) classes, group of each image)``; ``rng`` is
    left where :func:`chunk_scenes` continues drawing."""
    start, stop = c * cfg.chunk, min(cfg.n, (c + 1) * cfg.chunk)
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(_CHUNK_STREAM, c)))
    groups = -(-(stop - start) // cfg.reuse)
    first_group = start // cfg.reuse
    split = GROUP_SPLITS[(first_group + np.arange(groups)) % SPLIT_BUCKETS]
    classes = rng.integers(0, NUM_CLASSES, size=(groups, cfg.objects))
    per_image = np.repeat(np.arange(groups), cfg.reuse)[: stop - start]
    return rng, split, classes, per_image


def chunk_scenes(cfg: DatasetConfig, c: int):
    """The scenes of chunk ``c`` and each image's split: (SceneBatch, (n_c,) uint8)."""
    rng, split, classes, per_image = chunk_groups(cfg, c)
    groups, k = classes.shape
    pick = rng.random((groups, k))
    models = np.empty((groups, k), dtype=np.int64)
    for s in range(3):
        ids = split_models(s, cfg.models_per_class)
        rows = split == s
        models[rows] = ids[(pick[rows] * len(ids)).astype(np.int64)]
    scenes = sample_scenes(cfg.factors, rng, classes[per_image], models[per_image],
                           colour_reference(cfg.seed))
    return scenes, split[per_image]


def scene_labels(scenes, split: np.ndarray, multi: bool) -> dict:
    """The per-image label arrays of ``schema`` (all but the per-pixel ones) from a SceneBatch."""
    azimuth, elevation = front_angles(scenes.rotation)
    labels = {
        "label": scenes.classes[:, 0].astype(np.int64) if not multi else np.full(len(scenes), -1, np.int64),
        "model_id": scenes.model_id.astype(np.int32),
        "split": split.astype(np.uint8),
        "rotation": scenes.rotation.astype(np.float32),
        "euler": matrix_to_euler(scenes.rotation).astype(np.float32),
        "pose_class": pose_class(scenes.rotation),
        "azimuth": azimuth.astype(np.float32),
        "elevation": elevation.astype(np.float32),
        "light": scenes.light.astype(np.float32),
        "colour": scenes.colour.astype(np.float32),
    }
    if multi:
        labels["classes"] = scenes.classes.astype(np.int64)
    else:  # drop the object axis
        for name in ("model_id", "rotation", "euler", "pose_class", "azimuth", "elevation", "colour"):
            labels[name] = labels[name][:, 0]
    return labels


# ------------------------------------------------------------------------------------------------
# Rendering chunks (in this process or a worker process).

_RENDERERS: dict = {}


def renderer_for(res: int, supersample: int):
    """This process's renderer for (res, supersample): one OpenGL context, made once and kept."""
    key = (res, supersample)
    if key not in _RENDERERS:
        _RENDERERS[key] = Renderer(res, supersample)
    return _RENDERERS[key]


def render_chunk(cfg: DatasetConfig, c: int) -> dict:
    """All arrays of chunk ``c`` (rows ``c * chunk ...``), keyed as in :func:`schema`."""
    scenes, split = chunk_scenes(cfg, c)
    n, r = len(scenes), cfg.res
    arrays = {"images": np.empty((n, r, r, 3), np.uint8), "depth": np.empty((n, r, r), np.float16),
              "instance": np.empty((n, r, r), np.uint8), "segmentation": np.empty((n, r, r), np.uint8)}
    renderer_for(cfg.res, cfg.supersample).render(
        scenes, build_model, out=Rendered(arrays["images"], arrays["depth"], arrays["instance"],
                                          arrays["segmentation"]))
    arrays.update(scene_labels(scenes, split, cfg.multi))
    return arrays


def _write_chunk(cfg: DatasetConfig, folder: str, c: int) -> int:
    """Render chunk ``c`` and write it into the arrays under ``folder``; returns its image count."""
    arrays = render_chunk(cfg, c)
    write_slice(folder, c * cfg.chunk, arrays)
    return len(arrays["label"])


def _init_worker(threads: int) -> None:
    # llvmpipe reads its thread count when the context is made. When the workers fill the cores, each
    # rasterises on its own thread (0 = no extra threads) instead of every process starting one thread
    # per core; a value the user set wins.
    os.environ.setdefault("LP_NUM_THREADS", str(threads if threads > 1 else 0))


def default_workers() -> int:
    """One worker process per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def generate(cfg: DatasetConfig, out: str | os.PathLike | None = None, workers: int | None = None,
             progress: bool = True) -> Path:
    """Render the dataset of ``cfg`` into the folder ``out`` (default ``default_root()/default_name()``).

    workers: processes (default: one per core; 1 renders in this process). The folder appears only
    when complete: any failure (an exception here or in a worker, a killed worker, Ctrl-C) removes
    the partial output. Returns the dataset folder.
    """
    from tqdm import tqdm

    out = Path(out) if out is not None else default_root() / cfg.default_name()
    if workers is not None and (not _is_int(workers) or workers < 1):
        raise UserError(f"bad worker count {workers!r}: it must be a whole number >= 1")
    chunks = -(-cfg.n // cfg.chunk)
    workers = min(workers or default_workers(), chunks)
    writer = DatasetWriter(out, cfg.to_dict(), schema(cfg), cfg.n)
    bar = tqdm(total=cfg.n, unit="img", desc=out.name, disable=not progress, file=sys.stderr,
               smoothing=0.1, dynamic_ncols=True)
    started = time.perf_counter()
    try:
        if workers == 1:
            for c in range(chunks):
                bar.update(_write_chunk(cfg, str(writer.tmp_path), c))
            renderer = renderer_for(cfg.res, cfg.supersample).gl_renderer
        else:
            renderer = _generate_parallel(cfg, writer, workers, chunks, bar)
        seconds = time.perf_counter() - started
        path = writer.finalize(extra={"renderer": renderer, "classes": list(CLASSES),
                                      "render_seconds": round(seconds, 3)})
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    return path


def _generate_parallel(cfg: DatasetConfig, writer: DatasetWriter, workers: int, chunks: int, bar) -> str:
    import multiprocessing

    threads = max(1, default_workers() // workers)
    folder = str(writer.tmp_path)
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(threads,))
    try:
        pending = {executor.submit(_write_chunk, cfg, folder, c) for c in range(chunks)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                bar.update(future.result())  # re-raises a worker's exception (or BrokenProcessPool)
        renderer = executor.submit(_gl_renderer, cfg.res, cfg.supersample).result()
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return renderer


def _gl_renderer(res: int, supersample: int) -> str:
    return renderer_for(res, supersample).gl_renderer


def ensure_dataset(cfg: DatasetConfig, root: str | os.PathLike | None = None, workers: int | None = None,
                   progress: bool = True) -> Path:
    """The folder of the dataset of ``cfg`` under ``root`` (default :func:`default_root`), generating it
    unless a dataset with the same config hash is already there."""
    root = Path(root) if root is not None else default_root()
    want = cfg.hash()
    path = root / cfg.default_name()
    candidates = [path] + (sorted(p for p in root.iterdir() if p.is_dir() and p != path)
                           if root.is_dir() else [])
    for p in candidates:
        if (p / "manifest.json").is_file():
            try:
                if open_dataset(p).manifest.get("config_hash") == want:
                    return p
            except UserError:
                continue
    return generate(cfg, path, workers=workers, progress=progress)


def data_argument(data: str | os.PathLike, res: int | None = None,
                  n: int | None = None) -> "Path | DatasetConfig":
    """What a ``--data`` argument names: an existing dataset folder (a ``Path``), or, for a factor
    string such as ``TCVL``, ``-CV-`` or ``0110``, the ``DatasetConfig`` to generate or reuse (with
    ``res`` pixels and ``n`` images where given). A ``+multi`` suffix (``TCVL+multi``) asks for scenes
    of several objects (per-pixel labels: segmentation, depth)."""
    s = str(data)
    if Path(s).is_dir() or os.sep in s or not s.strip():
        return Path(s)
    base, plus, suffix = s.partition("+")
    if plus and suffix.strip().lower() != "multi":
        raise UserError(f"--data {s!r}: the only suffix a factor string takes is +multi (scenes of "
                        f"several objects), e.g. TCVL+multi")
    try:
        factors = Factors.parse(base)
    except UserError:
        raise UserError(f"--data {s!r} is neither a dataset folder nor a factor string "
                        f"(like TCVL, -CV-, 0110 or TCVL+multi)") from None
    kw: dict = {"factors": factors.bits, "multi": bool(plus)}
    if res is not None:
        kw["res"] = int(res)
    if n is not None:
        kw["n"] = int(n)
    return DatasetConfig(**kw)
