"""A study spec: the grid a study measures, read from YAML and expanded into cells.

A spec names the datasets (factor strings), the methods (``scratch`` plus self-supervised ones), the
backbones, tasks, downstream protocols, label counts and seeds, and the budgets. It is validated once,
here, before anything runs: every error is one line that names the field, what was given and what is
allowed (:class:`~selfstudy.errors.UserError`).

Expansion gives two kinds of :class:`Cell`:

- **pretraining cells**, one per dataset x SSL method x backbone x seed. Each runs once; every
  downstream cell of that combination reuses its checkpoint.
- **downstream cells**, one per dataset x method x backbone x task x protocol x label count x seed.
  ``scratch`` is the from-scratch baseline under ``finetune``; under ``linear`` and ``knn`` it probes
  randomly initialised features, a reference floor for the pretrained features. A task that a dataset
  cannot pose (pose on a fixed-viewpoint dataset; image-level tasks on ``multi: true`` datasets of
  several objects per scene, which only carry per-pixel labels) is skipped with a note, and so is a
  protocol that does not apply to a task (k-NN for anything but classification and pose).

**Transfer** (``datasets.pretrain_on``): by default each SSL method pretrains on the dataset its
cells finetune on. ``pretrain_on: [0000, 1111]`` pretrains on those datasets (factor strings, inside
the study's ``factors`` or not) and finetunes each of them on every dataset of ``factors``;
``pretrain_on: all`` is the full transfer grid over ``factors``. A downstream cell's ``pretrained_on``
names the dataset its checkpoint saw; its config (so its id) carries ``pretrained_on`` only where that
differs from the finetuning dataset, so a study without transfer keeps its cell ids.

**Dataset blocks** (one study, all four tasks): ``datasets`` may be a list of blocks, each a mapping
with the keys above and its own scene type and resolution, and optionally ``tasks`` (the study's tasks
that run on it; default all of them that its data has labels for), e.g. single-object 64 px blocks for
classification and pose beside four-object 128 px ones for segmentation and depth. A cell's dataset is
its factor bits in every block (the report keys on it); a task may run on a factor string in one
block only, so the report's groups stay one per (dataset, backbone, task). The cells of block ``i > 0``
keep their data under the key ``bits#i`` (:attr:`Cell.data_key`, :attr:`Plan.datasets`).

**Per-backbone budgets**: a protocol section may hold a mapping per backbone name over its shared
options, e.g. ``finetune: {batch_size: 128, resnet50: {batch_size: 64, max_steps: 20000}}``; each cell's
budget is the merged one (a cell whose backbone has no entry gets the shared options, as before).

**A scratch baseline per architecture**: method ``scratch-cmc`` trains CMC's own two-stream
half-width network from a fresh initialisation (no pretraining), so CMC's utility can be computed
against a baseline of the same architecture (:data:`BASELINES`); plain ``scratch`` trains the full
backbone.

Every cell has a stable id: a hash of its resolved config (the dataset's full generation config, the
method and its budget, the task, the protocol and its budget, label count, seed, colour space and
precision; a downstream cell's config includes the id of the pretraining cell it loads). The same spec
therefore always gives the same ids, and changing anything that changes a result gives new ones. The
device and ``channels_last`` are not part of a cell's identity: they change speed, not the experiment.

YAML layout (every key optional except ``datasets.factors``; see ``presets/quick.yaml``)::

    name: quick
    datasets: {factors: [TCVL], n: 18000, res: 32, models_per_class: 220, seed: 0, multi: false}
    methods:
      scratch: {}
      rotation: {epochs: 12, overrides: {batch_size: 256}}
    backbones: [resnet9-tiny]
    tasks: [classification, pose]
    protocols: [finetune, linear]
    labels: [100, 300, 1k, 3k]
    seeds: [0]
    finetune: {...finetune Budget fields...}
    linear: {...}   knn: {...}
    device: auto    precision: bf16    channels_last: true    space: rgb
    budget_check: {mode: auto, factor: 2, cap: 8, labels: [100, 3k], methods: [scratch, rotation], seeds: [0]}

``budget_check`` adds **check cells**: each finetune cell of the chosen methods, label counts and seeds
(default: all) run again with its budget's epochs, min_steps and max_steps multiplied by ``factor``.
With ``mode: auto`` (the default, also when the section is absent) a cell whose check gained more than
the tolerance is run again at ``factor`` times that, doubling until a doubling gains no more than the
tolerance or the next one would pass ``cap`` (the largest budget multiple, default 8): the attempt
whose doubling did not pay counts, and a cell still gaining at the cap is reported as *did not converge
within cap* (:mod:`selfstudy.study.autobudget`). ``cap: 2`` is a single check; ``mode: off`` (or
``budget_check: off``) runs none. The tolerance is each task's own (one accuracy point, one degree,
...; ``tolerance: x`` sets one for every task) and never below ``noise_k`` (default 1) standard errors
of the gain. Check cells run after every other cell; further doublings are added as the checks finish.
The report flags (†) every utility that uses a cell not converged, as it does for a cell still
improving when its budget ran out. It catches what that flag cannot: a run that the learning-rate
decay flattened before it had learned what it could.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping

from selfstudy.config import Config, Rule, apply_overrides, convert, load, load_yaml, option
from selfstudy.core.constants import BUDGET_CAP as DEFAULT_CAP, BUDGET_MODES, BUDGET_NOISE_K as NOISE_K
from selfstudy.core.constants import PRECISIONS, SCRATCH
from selfstudy.data.generate import DatasetConfig
from selfstudy.errors import UserError
from selfstudy.factors import Factors
from selfstudy.methods import METHODS, method_config
from selfstudy.models import BACKBONES, build_backbone
from selfstudy.scene.classes import NUM_CLASSES
import selfstudy.study.arms as arms
import selfstudy.study.imported as imported
from selfstudy.tasks import CategoricalTask, get_task
from selfstudy.train.budget import Budget, ProbeBudget
from selfstudy.train.pretrain import split_overrides

PROTOCOLS = ("finetune", "linear", "knn")
SPACES = ("rgb", "lab")
KINDS = ("pretrain", "downstream", "check")

TOP_KEYS = ("name", "datasets", "methods", "backbones", "tasks", "protocols", "labels", "seeds",
            "finetune", "linear", "knn", "device", "precision", "channels_last", "space", "budget_check",
            "utility")
BUDGET_CHECK_KEYS = ("mode", "factor", "cap", "labels", "methods", "seeds", "tolerance", "noise_k")
#: The finetune budget fields a budget check multiplies by its factor.
SCALED_BUDGET_FIELDS = ("epochs", "min_steps", "max_steps")
DATASET_KEYS = ("factors", "n", "res", "models_per_class", "seed", "multi", "pretrain_on", "tasks")
#: Scratch arms on another method's architecture: name -> the SSL method whose encoder it trains
#: from a fresh initialisation.
SCRATCH_ARCHS = {"scratch-cmc": "cmc"}
#: The baseline a method's utility is computed against when the study has it (else ``scratch``).
BASELINES = {arch: name for name, arch in SCRATCH_ARCHS.items()}
METHOD_KEYS = ("epochs", "overrides", "shared")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_COUNT = re.compile(r"^(\d+(?:\.\d+)?)\s*([kKmM]?)$")
_SEED = Rule(ge=0, allowed="a whole number >= 0")


# --- the spec -------------------------------------------------------------------------------------

#: Messages of the spec's own sections name the key's path: ``unknown key datasets.'size'``.
_UNKNOWN_KEY = "{where}: unknown key {prefix}{first!r}{hint}; allowed: {allowed}"
_WHOLE = "a whole number >= {}"


@dataclass(frozen=True)
class DataSpec(Config):
    """The datasets of a study: one per factor string, all with the same size and resolution.

    factors: canonical factor bits in TCVL order (``"1111"``); n: images per dataset (all splits);
    res: image side in pixels; models_per_class: distinct shapes per class (None: the generator's
    default); seed: the data seed; multi: scenes of several objects (per-pixel labels only: the dense
    tasks run, image-level tasks are skipped); pretrain_on: factor bits of the datasets the SSL
    methods pretrain on, each finetuned on every dataset of ``factors`` (empty: each dataset its own).
    """

    config_name: ClassVar[str] = "study spec"
    unknown_message: ClassVar[str] = _UNKNOWN_KEY
    read_strings: ClassVar[bool] = False

    factors: tuple[str, ...] = ()
    n: int = option(18000, ge=1, allowed=_WHOLE.format(1))
    res: int = option(32, ge=8, allowed=_WHOLE.format(8))
    models_per_class: int | None = option(None, ge=1, allowed=_WHOLE.format(1) + " or empty")
    seed: int = option(0, ge=0, allowed=_WHOLE.format(0))
    multi: bool = False
    pretrain_on: tuple[str, ...] = ()
    #: in a list of dataset blocks: the study's tasks that run on this block (empty: all of them)
    tasks: tuple[str, ...] = ()
    #: an imported dataset folder (``selfstudy data import``); ``factors`` then holds its name
    path: str | None = None

    @property
    def imported(self) -> "imported.ImportedData | None":
        """The imported dataset ``path`` names, read from its manifest (None for rendered data)."""
        return imported.read_imported(self.path) if self.path else None

    def config(self, factors: str) -> DatasetConfig:
        """The :class:`selfstudy.data.generate.DatasetConfig` of the dataset with these factors."""
        kw = {"factors": factors, "n": self.n, "res": self.res, "seed": self.seed, "multi": self.multi}
        if self.models_per_class is not None:
            kw["models_per_class"] = self.models_per_class
        return DatasetConfig(**kw)


@dataclass(frozen=True)
class MethodSpec(Config):
    """One method of a study: ``scratch`` or an SSL method with its pretraining budget.

    epochs: pretraining epochs (real passes over the training split; None: the method's default);
    overrides: method/training hyper-parameters that differ from the method's defaults;
    shared: one pretraining (at the study's first seed) that every seed's downstream cells load,
    instead of one pretraining per seed. Cheaper by the number of seeds, but the seeds then vary the
    finetuning only (labeled subset, initialisation of the head, batch order, augmentation): an
    interval over them holds the finetuning noise, not the noise of pretraining (the plan and the
    report say so).
    """

    config_name: ClassVar[str] = "study spec"
    unknown_message: ClassVar[str] = _UNKNOWN_KEY
    read_strings: ClassVar[bool] = False

    name: str = ""
    epochs: int | None = option(None, ge=1, allowed="a whole number >= 1 of pretraining epochs (passes over "
                                                    "the training split)")
    overrides: Mapping[str, Any] = field(default_factory=dict)
    shared: bool = False
    #: a weights arm (:mod:`selfstudy.study.arms`): the file, its backbone and its SHA-256
    path: str | None = None
    backbone: str | None = None
    sha256: str | None = None

    @property
    def is_weights(self) -> bool:
        """A weights file the person holds, finetuned as is (no pretraining cell)."""
        return self.path is not None

    @property
    def is_scratch(self) -> bool:
        """Not pretrained: ``scratch`` or a scratch arm on another method's architecture."""
        return self.name == SCRATCH or self.name in SCRATCH_ARCHS


@dataclass(frozen=True)
class BudgetCheck(Config):
    """The ``budget_check`` section as given (see the module docstring); :func:`_budget_check`
    resolves its defaults against the study's methods, labels and seeds."""

    config_name: ClassVar[str] = "study spec"
    unknown_message: ClassVar[str] = _UNKNOWN_KEY
    read_strings: ClassVar[bool] = False

    mode: str = option("auto", choices=BUDGET_MODES, style="choice", allowed=", ".join(BUDGET_MODES))
    factor: float = option(2.0, gt=1, le=100, allowed="a number in (1, 100], e.g. 2 (twice the budget)")
    cap: float = option(DEFAULT_CAP, ge=1, le=1e6, allowed="a budget multiple >= 1, e.g. 8 (auto doubles up "
                                                           "to 8 times the budget; 2: one check)")
    labels: Any = None
    methods: Any = None
    seeds: Any = None
    tolerance: float | None = option(None, ge=0, allowed="a number >= 0 in the task metric's units (e.g. "
                                                         "0.01 = one accuracy point), or null for each "
                                                         "task's own")
    noise_k: float = option(NOISE_K, ge=0, allowed="a number >= 0 of standard errors of the gain")


@dataclass(frozen=True)
class Spec(Config):
    """A validated study spec (see the module docstring). Build it with :func:`load_spec` or
    :func:`spec_from_dict`; :meth:`to_dict` gives back a dict that rebuilds the same spec.

    The scalar fields carry their rules (:func:`selfstudy.config.option`); the sections that name
    registry entries (methods, backbones, tasks, protocols) or have shorthands (labels ``1k``) are read
    by the helpers below :func:`spec_from_dict`.
    """

    config_name: ClassVar[str] = "study spec"
    unknown_message: ClassVar[str] = _UNKNOWN_KEY
    read_strings: ClassVar[bool] = False

    name: str = option("", pattern=_NAME, style="choice",
                       allowed="use letters, digits, '_', '-' and '.', starting with a letter or digit")
    datasets: DataSpec = field(default_factory=DataSpec)
    methods: tuple[MethodSpec, ...] = ()
    backbones: tuple[str, ...] = ("resnet9-tiny",)
    tasks: tuple[str, ...] = ("classification",)
    protocols: tuple[str, ...] = ("finetune",)
    labels: tuple[int, ...] = (100, 1000)
    seeds: tuple[int, ...] = (0,)
    finetune: Mapping[str, Any] = field(default_factory=dict)
    linear: Mapping[str, Any] = field(default_factory=dict)
    knn: Mapping[str, Any] = field(default_factory=dict)
    device: str = option("auto", pattern=_DEVICE, style="choice",
                         allowed="auto (a GPU if there is one), cpu, cuda or cuda:N")
    precision: str = option("bf16", choices=PRECISIONS, style="choice", allowed=", ".join(PRECISIONS))
    channels_last: bool = True
    space: str = option("rgb", choices=SPACES, style="choice", allowed=", ".join(SPACES))
    budget_check: Mapping[str, Any] = field(default_factory=dict)
    #: the dataset blocks when ``datasets`` is a list (``datasets`` is then the first); empty: one block
    blocks: tuple[DataSpec, ...] = ()

    @property
    def data_blocks(self) -> tuple[DataSpec, ...]:
        """Every dataset block (one unless ``datasets`` was given as a list)."""
        return self.blocks or (self.datasets,)

    def block(self, cell: "Cell") -> DataSpec:
        """The dataset block of ``cell``."""
        return self.data_blocks[cell.block]

    def dataset_config(self, key: str) -> DatasetConfig:
        """The generation config of the dataset under ``key`` of :attr:`Plan.datasets` (``bits`` or
        ``bits#i`` for block ``i``)."""
        bits, _, i = key.partition("#")
        return self.data_blocks[int(i or 0)].config(bits)
    #: ``{baseline: NAME}``: the arm utility is computed against (empty: scratch; :mod:`.arms`)
    utility: Mapping[str, Any] = field(default_factory=dict)

    def method(self, name: str) -> MethodSpec:
        return next(m for m in self.methods if m.name == name)

    def protocol_options(self, protocol: str, backbone: str | None = None) -> dict:
        """The options of ``protocol``: the shared ones, with ``backbone``'s own entry merged over them."""
        return protocol_options(getattr(self, protocol), backbone)

    def to_dict(self) -> dict:
        """A plain (YAML/JSON-serialisable) dict that :func:`spec_from_dict` turns back into this spec."""
        d = {
            "name": self.name,
            "datasets": {"factors": list(self.datasets.factors), "n": self.datasets.n,
                         "res": self.datasets.res, "models_per_class": self.datasets.models_per_class,
                         "seed": self.datasets.seed, "multi": self.datasets.multi,
                         **({"pretrain_on": list(self.datasets.pretrain_on)} if self.datasets.pretrain_on
                            else {})},
            "methods": {m.name: ({} if m.is_scratch else {"epochs": m.epochs, "overrides": dict(m.overrides),
                                                          **({"shared": True} if m.shared else {})})
                        for m in self.methods},
        }
        if self.datasets.path:  # an imported folder: its path (res is read from it)
            d["datasets"] = {"path": self.datasets.path}
        for m in self.methods:
            if m.is_weights:
                d["methods"][m.name] = {"path": m.path, "backbone": m.backbone}
        if self.blocks:
            d["datasets"] = self._blocks_dict()
        for key in TOP_KEYS[3:]:
            v = getattr(self, key)
            if key == "utility" and not v:
                continue  # utility against scratch: the spec as it always was
            d[key] = list(v) if isinstance(v, tuple) else (dict(v) if isinstance(v, Mapping) else v)
        return d

    def _blocks_dict(self) -> list[dict]:
        out = []
        for b in self.blocks:
            d = {"factors": list(b.factors), "n": b.n, "res": b.res, "models_per_class": b.models_per_class,
                 "seed": b.seed, "multi": b.multi}
            if b.pretrain_on:
                d["pretrain_on"] = list(b.pretrain_on)
            if b.tasks:
                d["tasks"] = list(b.tasks)
            out.append(d)
        return out

    def cells(self) -> "Plan":
        """Expand into cells (see :func:`expand`)."""
        return expand(self)


# --- loading --------------------------------------------------------------------------------------


def preset_names() -> list[str]:
    """Names of the specs packaged in ``selfstudy/study/presets``."""
    folder = resources.files("selfstudy.study") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    """The YAML text of packaged preset ``name``."""
    if name not in preset_names():
        raise UserError(f"no preset named {name!r}; presets: {', '.join(preset_names())}")
    return (resources.files("selfstudy.study") / "presets" / f"{name}.yaml").read_text()


def load_spec(source: str | Path, overrides: Iterable[str] = (), data: str | Path | None = None) -> Spec:
    """Read a study spec from a YAML file or a preset name, apply ``key.sub=value`` overrides, validate.

    ``source`` is a path to a ``.yaml`` file, or the name of a packaged preset (``quick``, ``paper``,
    ``smoke``, ``own``). ``data``: an imported dataset folder that replaces the spec's datasets
    (``datasets: {path: data}``; the ``own`` preset needs it). Raises :class:`UserError` for a missing
    source, bad YAML (a key given twice too) or an invalid spec.
    """
    path = Path(source)
    if path.is_file():
        text, where = path.read_text(), str(path)
    elif str(source) in preset_names():
        text, where = preset_text(str(source)), f"preset {source}"
    else:
        raise UserError(f"no spec file or preset named {str(source)!r}: give a path to a .yaml study spec "
                        f"or one of the presets {', '.join(preset_names())}")
    raw = load_yaml(text, where)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise UserError(f"{where}: a study spec is a YAML mapping of keys ({', '.join(TOP_KEYS)}), "
                        f"got {type(raw).__name__}")
    raw = _normalise(dict(raw))
    overrides = list(overrides)
    if overrides:
        raw = apply_overrides(raw, overrides)
        where += " with overrides"
    if data is not None:
        raw["datasets"] = {"path": str(data)}
    return spec_from_dict(raw, where=where)


def spec_from_dict(raw: Mapping, where: str = "study spec") -> Spec:
    """Validate a spec given as a dict (the YAML's content) and build the :class:`Spec`."""
    raw = _normalise(dict(raw))
    _no_unknown(raw, TOP_KEYS, where)
    if raw.get("name") is None:
        raise UserError(f"{where}: 'name' is missing: give the study a name (letters, digits, '_', '-', '.')")

    blocks = _data_blocks(raw.get("datasets"), where)
    datasets = blocks[0] if blocks else _data_spec(raw.get("datasets"), where)
    methods = _methods(raw.get("methods"), where)
    backbones = _names(raw.get("backbones", Spec.backbones), "backbones", where, list(BACKBONES))
    for b in (blocks or (datasets,)):
        _check_methods(methods, backbones, b.res, where)
    methods = _weights_arms(methods, backbones, datasets.res, where)
    tasks = _tasks(raw.get("tasks", _block_tasks_default(raw.get("datasets"))), where)
    blocks = _resolve_block_tasks(blocks, tasks, where)
    if blocks:
        datasets = blocks[0]
    protocols = _names(raw.get("protocols", Spec.protocols), "protocols", where, PROTOCOLS)
    labels = (_auto_labels(datasets, where) if raw.get("labels") == "auto"
              else _labels(raw.get("labels", Spec.labels), where))
    seeds = _seeds(raw.get("seeds", Spec.seeds), where)
    options = {p: _mapping(raw.get(p), p, where) for p in PROTOCOLS}
    for p in PROTOCOLS:
        for name, block in options[p].items():
            if name in BACKBONES and not isinstance(block, Mapping):
                raise UserError(f"{where}: {p}.{name} must be a mapping of {p} options for backbone {name}, "
                                f"got {block!r}")
        _check_protocol_options(p, protocol_options(options[p], None), where)
        for b in backbones:
            if b in options[p]:
                try:
                    _protocol_budget(p, protocol_options(options[p], b))
                except UserError as e:
                    raise UserError(f"{where}: {p}.{b}: {e}") from None
    check = _budget_check(raw.get("budget_check"), protocols, labels, methods, where)
    scalars = {k: raw[k] for k in ("name", "device", "precision", "channels_last", "space") if k in raw}
    spec = load(Spec, {**scalars, "datasets": datasets, "methods": methods, "backbones": backbones,
                       "tasks": tasks, "protocols": protocols, "labels": labels, "seeds": seeds,
                       "budget_check": check, "blocks": blocks, **options,
                       "utility": arms.utility_options(raw.get("utility"), methods, where)}, where=where)

    if spec.precision == "fp16" and spec.device == "cpu":
        raise UserError(f"{where}: precision fp16 needs a CUDA device, but device is cpu; allowed on a "
                        f"CPU: fp32 or bf16")
    for i, b in enumerate(spec.data_blocks):
        _check_resolution(backbones, b.res, where if not blocks else f"{where}: datasets[{i}]")
        _check_labels(dataclasses.replace(spec, datasets=b), where if not blocks else f"{where}: datasets[{i}]")
    return spec


def _normalise(raw: dict) -> dict:
    """Shorthands a YAML author may use, turned into the canonical layout (before overrides apply,
    so that ``methods.rotation.epochs=5`` works on ``methods: [scratch, rotation]``)."""
    raw = arms.normalise(raw)  # weights arms and ``baselines``
    methods = raw.get("methods")
    if isinstance(methods, str):
        methods = [methods]
    if isinstance(methods, list):
        out = {}
        for m in methods:
            if isinstance(m, str):
                out[m] = {}
            elif isinstance(m, Mapping) and len(m) == 1:
                (k, v), = m.items()
                out[k] = v
            else:
                raise UserError(f"methods: each list entry is a method name or {{name: {{epochs: ...}}}}, "
                                f"got {m!r}")
        raw["methods"] = out
    datasets = raw.get("datasets")
    if isinstance(datasets, str) or (isinstance(datasets, list)
                                     and not any(isinstance(d, Mapping) for d in datasets)):
        raw["datasets"] = {"factors": datasets}
    return raw


# --- expansion ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One unit of work with its stable id.

    kind: ``"pretrain"`` or ``"downstream"``; dataset: factor bits; method/backbone: registry names;
    seed: the cell's seed (a downstream cell loads the pretraining cell of the same seed);
    task/protocol/n_labels: downstream only; pretrain_id: the pretraining cell a downstream cell loads
    (None for scratch); pretrained_on: factor bits of the dataset that pretraining saw (downstream
    cells of an SSL method; None for scratch and pretraining cells); config: the resolved config the
    id hashes (JSON-serialisable).
    """

    id: str
    kind: str
    dataset: str
    method: str
    backbone: str
    seed: int
    task: str | None = None
    protocol: str | None = None
    n_labels: int | None = None
    pretrain_id: str | None = None
    pretrained_on: str | None = None
    block: int = 0
    config: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def label(self) -> str:
        """A short human-readable name: ``TCVL rotation resnet9-tiny s0 classification finetune n=100``."""
        head = f"{dataset_label(self.dataset)} {self.method} {self.backbone} s{self.seed}"
        if self.kind == "pretrain":
            return f"pretrain {head}"
        tail = f" (budget check x{self.config['budget_factor']:g})" if self.kind == "check" else ""
        if self.pretrained_on is not None and self.pretrained_on != self.dataset:
            head += f" (pretrained on {Factors.parse(self.pretrained_on).letters})"
        return f"{head} {self.task} {self.protocol} n={self.n_labels}{tail}"

    @property
    def data_key(self) -> str:
        """The key of the cell's dataset in :attr:`Plan.datasets`: its factor bits, ``bits#i`` in
        dataset block ``i > 0``."""
        return self.dataset if self.block == 0 else f"{self.dataset}#{self.block}"

    @property
    def timing_key(self) -> str:
        """Cells of the same timing key take about the same time (for the ETA)."""
        if self.kind == "pretrain":
            return f"pretrain/{self.method}/{self.backbone}"
        return f"{self.kind}/{self.protocol}/{self.backbone}"

    @property
    def check_of(self) -> str | None:
        """For a budget-check cell: the id of the downstream cell it re-runs at a larger budget."""
        return self.config.get("check_of") if self.kind == "check" else None


@dataclass
class Plan:
    """The cells of a spec: pretraining cells first (in run order), then downstream cells, then the
    budget-check cells (downstream finetune cells re-run at a larger budget; none unless the spec has
    ``budget_check``).

    datasets: factor bits -> the dataset's resolved config dict; notes: cells skipped and why.
    """

    pretrain: list[Cell]
    downstream: list[Cell]
    datasets: dict[str, dict]
    notes: list[str]
    checks: list[Cell] = field(default_factory=list)

    @property
    def all(self) -> list[Cell]:
        return self.pretrain + self.downstream + self.checks

    def __len__(self) -> int:
        return len(self.pretrain) + len(self.downstream) + len(self.checks)


def cell_id(config: Mapping) -> str:
    """The stable id of a resolved cell config: 16 hex digits of the SHA-256 of its canonical JSON."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def expand(spec: Spec) -> Plan:
    """All cells of ``spec`` (see :func:`_expand_block`): with dataset blocks, each block's cells in
    turn (pretraining cells of every block first), its datasets under ``bits`` (block 0) or ``bits#i``."""
    if not spec.blocks:
        return _expand_block(spec)
    pre, down, checks, notes, data = [], [], [], [], {}
    for i, b in enumerate(spec.blocks):
        sub = dataclasses.replace(spec, datasets=b, blocks=(), tasks=b.tasks or spec.tasks)
        try:
            plan = _expand_block(sub)
        except UserError as e:
            raise UserError(f"study {spec.name}: datasets[{i}]: {str(e).split(': ', 1)[-1]}") from None
        data.update({(k if i == 0 else f"{k}#{i}"): v for k, v in plan.datasets.items()})
        pre += [dataclasses.replace(c, block=i) for c in plan.pretrain]
        down += [dataclasses.replace(c, block=i) for c in plan.downstream]
        checks += [dataclasses.replace(c, block=i) for c in plan.checks]
        notes += plan.notes
    return Plan(pretrain=pre, downstream=down, datasets=data, notes=list(dict.fromkeys(notes)), checks=checks)


def pretrain_seeds(method: MethodSpec, seeds: tuple[int, ...]) -> tuple[int, ...]:
    """The seeds of ``method``'s pretraining cells: every study seed, or only the first for a method
    with ``shared: true``."""
    return seeds[:1] if method.shared else seeds


def pre_seed(method: MethodSpec, seed: int, seeds: tuple[int, ...]) -> int:
    """The seed of the pretraining cell that a downstream cell of ``seed`` loads: its own, or the
    study's first seed for a method with ``shared: true``."""
    return pretrain_seeds(method, seeds)[0] if method.shared else seed


def shared_notes(methods: Iterable[tuple[str, bool]], seeds: tuple[int, ...]) -> list[str]:
    """What the plan and the report say of each ``(name, shared)`` method whose pretraining every seed
    shares (nothing with one seed: there is no interval to qualify)."""
    if len(seeds) < 2:
        return []
    return [f"{name}: one pretraining (seed {seeds[0]}) shared by every seed; the seeds vary its "
            f"finetuning only, so its intervals hold the finetuning noise, not the noise of pretraining"
            for name, shared in methods if shared]


def augment_notes(finetune: Mapping[str, Any] | None) -> list[str]:
    """What the plan and the report say when finetuning runs without the paper's augmentation
    (``finetune: {augment: false}``, for every backbone or for some)."""
    finetune = finetune or {}
    off = finetune.get("augment") is False
    some = sorted(k for k, v in finetune.items() if isinstance(v, Mapping) and v.get("augment") is False)
    if not off and not some:
        return []
    where = "" if off else f" on {', '.join(some)}"
    return [f"finetuning{where} without augmentation (finetune.augment: false), for every arm alike: a "
            f"network on a few hundred labels then stops gaining within a few hundred passes, so budgets "
            f"converge quickly, but scratch is weaker than with the paper's augmentation and utilities "
            f"are larger than under the paper's protocol"]


def method_notes(methods: Iterable[tuple[str, bool]], seeds: tuple[int, ...], protocols: Iterable[str],
                 finetune: Mapping[str, Any] | None) -> list[str]:
    """The notes on how a study's numbers were made that the plan and the report both carry: each
    shared pretraining (:func:`shared_notes`) and, when the study finetunes, finetuning without
    augmentation (:func:`augment_notes`)."""
    notes = shared_notes(methods, seeds)
    if "finetune" in protocols:
        notes += augment_notes(finetune)
    return notes


def _expand_block(spec: Spec) -> Plan:
    """All cells of ``spec``: one pretraining cell per (dataset, SSL method, backbone, seed), reused by
    every downstream cell of that combination, then the downstream grid (see the module docstring).

    Order: pretraining cells by dataset, method, backbone, seed; downstream cells by seed, dataset,
    backbone, task, protocol, label count, method, so that a partly finished study already holds
    comparable scratch and pretrained cells.
    """
    sources = pretrain_sources(spec.datasets)
    data = {f: _dataset_dict(spec.datasets, f) for f in dict.fromkeys(spec.datasets.factors + sources)}
    notes: list[str] = []
    pretrain: dict[tuple, Cell] = {}
    for f in dict.fromkeys(sources or spec.datasets.factors):
        for m in spec.methods:
            if m.is_scratch or m.is_weights:
                continue
            for b in spec.backbones:
                for s in pretrain_seeds(m, spec.seeds):
                    cfg = {"kind": "pretrain", "dataset": data[f], "method": m.name, "backbone": b,
                           "seed": s, "config": _resolved_method(m.name, b, m.epochs, m.overrides,
                                                                 spec.datasets.res),
                           "space": spec.space, "precision": spec.precision}
                    pretrain[(f, m.name, b, s)] = Cell(id=cell_id(cfg), kind="pretrain", dataset=f,
                                                       method=m.name, backbone=b, seed=s, config=cfg)

    budgets = {(p, b): _resolved_options(p, spec.protocol_options(p, b)) for p in spec.protocols
               for b in spec.backbones}
    downstream = []
    for s in spec.seeds:
        for f in spec.datasets.factors:
            for b in spec.backbones:
                for t in spec.tasks:
                    why = _task_unavailable(t, f, spec.datasets.multi, spec.datasets.path)
                    if why:
                        notes.append(f"skipped task {t} on {dataset_label(f)}: {why}")
                        continue
                    for p in spec.protocols:
                        why = _protocol_unavailable(p, t)
                        if why:
                            notes.append(f"skipped {p} for task {t}: {why}")
                            continue
                        for n in spec.labels:
                            for m in spec.methods:
                                if m.is_weights and m.backbone != b:
                                    continue  # a weights file fits its own backbone only
                                for src in ([None] if m.is_scratch or m.is_weights else (sources or [f])):
                                    pre = None if src is None else pretrain[(src, m.name, b, pre_seed(m, s, spec.seeds))]
                                    cfg = {"kind": "downstream", "dataset": data[f], "method": m.name,
                                           "backbone": b, "task": t, "protocol": p, "n_labels": n, "seed": s,
                                           "budget": budgets[(p, b)], "space": spec.space,
                                           "precision": spec.precision,
                                           "pretrain": pre.id if pre else None}
                                    if src is not None and src != f:  # same-dataset cells keep their ids
                                        cfg["pretrained_on"] = data[src]
                                    if m.name in SCRATCH_ARCHS:
                                        cfg["arch"] = SCRATCH_ARCHS[m.name]
                                    if m.is_weights:
                                        cfg = arms.weights_cell_config(cfg, m)
                                    downstream.append(Cell(id=cell_id(cfg), kind="downstream", dataset=f,
                                                           method=m.name, backbone=b, seed=s, task=t,
                                                           protocol=p, n_labels=n,
                                                           pretrain_id=pre.id if pre else None,
                                                           pretrained_on=src, config=cfg))
    notes += method_notes(((m.name, m.shared) for m in spec.methods), spec.seeds, spec.protocols, spec.finetune)
    if "finetune" in spec.protocols and not any(m.name == SCRATCH for m in spec.methods):
        notes.append("no scratch method: the report needs scratch finetune cells to compute utility")
    notes += [f"{m.name} runs on backbone {m.backbone} only (a weights file fits one architecture)"
              for m in spec.methods if m.is_weights and len(spec.backbones) > 1]
    if spec.datasets.path:
        notes.append(spec.datasets.imported.imbalance_note(spec.labels))
    notes = [n for n in dict.fromkeys(notes) if n]
    checks = _check_cells(spec, downstream)
    missing = [n for n in spec.budget_check.get("labels", []) if n not in spec.labels]
    if missing:
        notes.append(f"budget_check.labels {missing} are not among the study's labels {list(spec.labels)}: "
                     f"no check cells for them")
    if not downstream:
        raise UserError(f"study {spec.name}: the spec expands to no runnable cell: "
                        + ("; ".join(notes) or "no task and protocol applies to its datasets"))
    # A pretraining cell nobody loads (every task skipped on its dataset) is not worth running.
    used = {c.pretrain_id for c in downstream}
    pre_cells = [c for c in pretrain.values() if c.id in used]
    return Plan(pretrain=pre_cells, downstream=downstream, datasets=data, notes=notes, checks=checks)


def _check_cells(spec: Spec, downstream: list[Cell]) -> list[Cell]:
    """One budget-check cell per finetune cell of the chosen methods and label counts: the same cell
    with its budget scaled by ``budget_check.factor`` (:func:`check_cell`). The further doublings of
    ``mode: auto`` are added by the runner as the checks finish."""
    check = spec.budget_check
    if not checks_on(check) or check["factor"] > check.get("cap", DEFAULT_CAP):
        return []
    return [check_cell(c, check["factor"]) for c in downstream if is_checked(c, check)]


def checks_on(check: Mapping[str, Any]) -> bool:
    """Whether a resolved ``budget_check`` section runs checks (not empty, not ``mode: off``)."""
    return bool(check) and check.get("mode", "auto") != "off"


def is_checked(cell: Cell, check: Mapping[str, Any]) -> bool:
    """Whether the resolved ``budget_check`` section checks downstream ``cell``."""
    if cell.kind != "downstream" or cell.protocol != "finetune" or not checks_on(check):
        return False
    if cell.method not in check["methods"] or cell.n_labels not in check["labels"]:
        return False
    return "seeds" not in check or cell.seed in check["seeds"]


def check_cell(cell: Cell, factor: float) -> Cell:
    """Downstream finetune ``cell`` re-run with its budget multiplied by ``factor``: a check cell (an
    attempt of ``budget: auto``) whose config adds ``budget_factor`` and ``check_of`` (its id)."""
    cfg = {**cell.config, "kind": "check", "budget": scaled_budget(cell.config["budget"], factor),
           "budget_factor": float(factor), "check_of": cell.id}
    return Cell(id=cell_id(cfg), kind="check", dataset=cell.dataset, method=cell.method,
                backbone=cell.backbone, seed=cell.seed, task=cell.task, protocol=cell.protocol,
                n_labels=cell.n_labels, pretrain_id=cell.pretrain_id, pretrained_on=cell.pretrained_on,
                config=cfg)


# --- field validation -----------------------------------------------------------------------------


def _no_unknown(raw: Mapping, allowed: Iterable[str], where: str, prefix: str = "") -> None:
    allowed = list(allowed)
    for k in raw:
        if k not in allowed:
            near = difflib.get_close_matches(str(k), allowed, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise UserError(f"{where}: unknown key {prefix}{k!r}{hint}; allowed: {', '.join(allowed)}")


def _budget_check(raw, protocols: tuple, labels: tuple, methods: tuple, where: str) -> dict:
    """The resolved ``budget_check`` section: ``{"mode": "off"}`` or ``{mode, factor, cap, labels,
    methods, tolerance, noise_k[, seeds]}`` with every default filled in (``mode: auto``, factor 2, cap
    8, all label counts, every method including scratch, each task's tolerance, 1 standard error).
    Absent, it is ``mode: auto`` when the study finetunes, off otherwise."""
    if raw is False or raw == "off":  # YAML reads a bare off as false
        raw = {"mode": "off"}
    given_section = raw is not None
    raw = _mapping(raw, "budget_check", where)
    if raw.get("mode") is False:
        raw["mode"] = "off"
    given = BudgetCheck.load(raw, where=where, prefix="budget_check.")
    if given.mode == "off" or ("finetune" not in protocols and not given_section):
        return {"mode": "off"}
    if "finetune" not in protocols:
        raise UserError(f"{where}: budget_check re-runs finetune cells, but protocols has no finetune "
                        f"(add finetune or set budget_check.mode=off)")
    names = [m.name for m in methods]
    chosen = given.methods if given.methods is not None else names
    chosen_methods = list(_names(chosen, "budget_check.methods", where, names))
    # Counts that are not among the study's labels (say after a labels=... override) check nothing;
    # the plan says so in a note.
    chosen_labels = list(_labels(given.labels if given.labels is not None else list(labels), where))
    out = {"mode": given.mode, "factor": given.factor, "cap": given.cap, "labels": sorted(set(chosen_labels)),
           "methods": [m for m in names if m in chosen_methods], "tolerance": given.tolerance,
           "noise_k": given.noise_k}
    if given.seeds is not None:  # default: every seed of the study
        out["seeds"] = sorted(set(_seeds(given.seeds, where)))
    return out


def scaled_budget(budget: Mapping[str, Any], factor: float) -> dict:
    """A resolved finetune budget with :data:`SCALED_BUDGET_FIELDS` multiplied by ``factor`` (rounded
    up): the budget a check cell re-runs its cell with."""
    out = dict(budget)
    for k in SCALED_BUDGET_FIELDS:
        if isinstance(out.get(k), (int, float)) and not isinstance(out.get(k), bool):
            v = out[k] * factor
            out[k] = int(-(-v // 1)) if isinstance(budget[k], int) else float(v)
    return out


def _mapping(value, key: str, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UserError(f"{where}: {key} must be a mapping of options, got {value!r}")
    return dict(value)


def _data_spec(raw, where: str) -> DataSpec:
    if isinstance(raw, Mapping) and raw.get("path") is not None:
        return _imported_data_spec(raw, where)
    if raw is None or (isinstance(raw, Mapping) and "path" in raw and raw.get("factors") is None):
        raise UserError(f"{where}: 'datasets' is missing: give datasets.factors, e.g. [TCVL] or [0000, 1111], "
                        f"or datasets.path, a folder from `selfstudy data import` (`selfstudy study run own "
                        f"--data DIR`)")
    if not isinstance(raw, Mapping):
        raise UserError(f"{where}: datasets must be a mapping with keys {', '.join(DATASET_KEYS)}, got {raw!r}")
    _no_unknown(raw, DATASET_KEYS, where, "datasets.")
    factors = raw.get("factors")
    if isinstance(factors, (str, int)):
        factors = [factors]
    if not factors or not isinstance(factors, list):
        raise UserError(f"{where}: datasets.factors must be a list of factor strings like [TCVL, 0000], "
                        f"got {factors!r}")
    bits = _factor_bits(factors, "datasets.factors", where)
    sources = _pretrain_on(raw.get("pretrain_on"), bits, where)
    data = DataSpec.load({**raw, "factors": tuple(bits), "pretrain_on": sources}, where=where,
                         prefix="datasets.")
    try:
        data.config(bits[0])  # the generator's own checks (resolution, models per class)
    except UserError as e:
        raise UserError(f"{where}: datasets: {e}") from None
    return data


def _methods(raw, where: str) -> tuple[MethodSpec, ...]:
    if not raw:
        raise UserError(f"{where}: 'methods' is missing or empty: list scratch and SSL methods, "
                        f"e.g. [scratch, rotation]")
    if not isinstance(raw, Mapping):
        raise UserError(f"{where}: methods must be a list of names or a mapping name -> options, got {raw!r}")
    allowed = [SCRATCH, *SCRATCH_ARCHS] + sorted(METHODS)
    out = []
    for name, opts in raw.items():
        if arms.is_weights_name(name):  # a weights file; checked against the backbones by _weights_arms
            opts = _mapping(opts, f"methods.{name}", where)
            _no_unknown(opts, arms.WEIGHTS_KEYS, where, f"methods.{name}.")
            if not opts.get("path"):
                raise UserError(f"{where}: methods.{name} needs path: the weights file")
            out.append(MethodSpec.load({"name": name, "path": str(opts["path"]), "backbone": opts.get("backbone")},
                                       where=where, prefix=f"methods.{name}."))
            continue
        if name not in allowed:
            near = difflib.get_close_matches(str(name), allowed, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise UserError(f"{where}: unknown method {name!r}{hint}; allowed: {', '.join(allowed)}")
        opts = _mapping(opts, f"methods.{name}", where)
        if (name == SCRATCH or name in SCRATCH_ARCHS) and opts:
            raise UserError(f"{where}: methods.{name} takes no options (it is not pretrained); "
                            f"its training budget is the 'finetune' section, got {opts!r}")
        _no_unknown(opts, METHOD_KEYS, where, f"methods.{name}.")
        opts["overrides"] = _mapping(opts.get("overrides"), f"methods.{name}.overrides", where)
        out.append(MethodSpec.load({**opts, "name": name}, where=where, prefix=f"methods.{name}."))
    return tuple(out)


def _names(raw, key: str, where: str, allowed: Iterable[str]) -> tuple[str, ...]:
    allowed = list(allowed)
    raw = list(raw) if isinstance(raw, tuple) else raw  # the defaults are tuples
    if isinstance(raw, str):
        raw = [raw]
    if not raw or not isinstance(raw, list):
        raise UserError(f"{where}: {key} must be a non-empty list; allowed: {', '.join(allowed)}")
    for v in raw:
        if v not in allowed:
            near = difflib.get_close_matches(str(v), allowed, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise UserError(f"{where}: unknown {key[:-1] if key.endswith('s') else key} {v!r} in {key}{hint}; "
                            f"allowed: {', '.join(allowed)}")
    if len(set(raw)) != len(raw):
        raise UserError(f"{where}: {key} lists a name twice: {raw}")
    return tuple(raw)


def _tasks(raw, where: str) -> tuple[str, ...]:
    raw = list(raw) if isinstance(raw, tuple) else raw  # the defaults are tuples
    if isinstance(raw, str):
        raw = [raw]
    if not raw or not isinstance(raw, list):
        raise UserError(f"{where}: tasks must be a non-empty list, e.g. [classification, pose]")
    out = []
    for t in raw:
        if not isinstance(t, str):
            raise UserError(f"{where}: a task is a name like classification or pose, got {t!r}")
        try:
            out.append(get_task(t).spec)  # the canonical spelling, e.g. pose(bins=24)
        except UserError as e:
            raise UserError(f"{where}: tasks: {e}") from None
    if len(set(out)) != len(out):
        raise UserError(f"{where}: tasks lists a task twice: {raw}")
    return tuple(out)


def _parse_count(v) -> int | None:
    """A label count: an int, or a string like ``1k``/``2.5k``/``1m``."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        m = _COUNT.match(v.strip())
        if m:
            x = float(m.group(1)) * {"": 1, "k": 1000, "m": 1000000}[m.group(2).lower()]
            return int(x) if x.is_integer() else None
    return None


def _labels(raw, where: str) -> tuple[int, ...]:
    raw = list(raw) if isinstance(raw, tuple) else raw  # the defaults are tuples
    if isinstance(raw, (int, str)) and not isinstance(raw, bool):
        raw = [raw]
    if not raw or not isinstance(raw, list):
        raise UserError(f"{where}: labels must be a non-empty list of label counts, e.g. [100, 1k, 10k]")
    out = []
    for v in raw:
        n = _parse_count(v)
        if n is None or n < 1:
            raise UserError(f"{where}: label count {v!r} is not allowed: label counts are positive whole "
                            f"numbers (100, 1000, or 1k)")
        out.append(n)
    if len(set(out)) != len(out):
        raise UserError(f"{where}: labels lists a count twice: {raw}")
    return tuple(sorted(out))


def _seeds(raw, where: str) -> tuple[int, ...]:
    raw = list(raw) if isinstance(raw, tuple) else raw  # the defaults are tuples
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = [raw]
    if not raw or not isinstance(raw, list):
        raise UserError(f"{where}: seeds must be a non-empty list of whole numbers >= 0, e.g. [0, 1, 2]")
    out = tuple(convert(s, int, "each seed", where, _SEED, strings=False) for s in raw)
    if len(set(out)) != len(out):
        raise UserError(f"{where}: seeds lists a seed twice: {raw}")
    return out


# --- what the other packages allow ----------------------------------------------------------------


def _check_resolution(backbones: tuple[str, ...], res: int, where: str) -> None:
    """Every backbone must take ``res``-pixel images."""
    for b in backbones:
        try:
            build_backbone(b).check_input_res(res)
        except UserError as e:
            raise UserError(f"{where}: datasets.res={res} does not suit backbone {b}: {e}") from None


def _task_unavailable(t: str, factors: str, multi: bool = False, path: str | None = None) -> str:
    """Why task ``t`` cannot run on the dataset with these factor bits, or on the imported folder
    ``path`` ("" if it can)."""
    task = get_task(t)
    if path:
        return "" if imported.classification_only(task) else "an imported dataset has class labels only " \
                                                              "(classification)"
    if multi and not task.dense:
        return "multi-object scenes have no per-image label (their tasks are per-pixel: segmentation, depth)"
    a = task.available(factors)
    return "" if a else (a.reason or "not available on this dataset")


def _protocol_unavailable(protocol: str, t: str) -> str:
    """Why ``protocol`` does not apply to task ``t`` ("" if it does): k-NN votes for image classes."""
    if protocol != "knn":
        return ""
    return "" if isinstance(get_task(t), CategoricalTask) else "k-NN votes for classes (classification, pose)"


def _resolved_method(name: str, backbone: str, epochs: int | None, overrides: Mapping,
                     res: int) -> dict:
    """The method's full config for ``backbone`` (its paper defaults, then ``overrides`` and ``epochs``)
    plus the training-loop overrides: everything pretraining will use. Raises UserError for an unknown
    option or a value the method refuses."""
    method_over, train_over = split_overrides(METHODS[name], dict(overrides))
    if epochs is not None:
        method_over["epochs"] = epochs
    if "steps" in train_over and "epochs" in method_over:
        raise UserError(f"methods.{name}: give epochs or overrides.steps, not both")
    cfg = method_config(name, backbone, method_over, res).to_dict()
    return {"method": _jsonable(cfg), "train": _jsonable(train_over)}


def _check_methods(methods: tuple, backbones: tuple, res: int, where: str) -> None:
    for m in methods:
        if m.is_scratch or m.is_weights:
            continue
        for b in backbones:
            try:
                _resolved_method(m.name, b, m.epochs, m.overrides, res)
            except UserError as e:
                raise UserError(f"{where}: methods.{m.name}: {e}") from None


def _protocol_budget(protocol: str, options: Mapping, where: str | None = None) -> Budget | ProbeBudget:
    """The budget a protocol's options give (finetune: :class:`~selfstudy.train.budget.Budget`;
    linear, knn: :class:`~selfstudy.train.budget.ProbeBudget`), converted and validated."""
    return (Budget if protocol == "finetune" else ProbeBudget).load(dict(options), where=where)


def _check_protocol_options(protocol: str, options: Mapping, where: str) -> None:
    """Reject options the protocol's budget does not have and values it refuses."""
    try:
        _protocol_budget(protocol, options, f"{where}: {protocol}")
    except UserError as e:
        msg = str(e)
        raise UserError(msg if msg.startswith(where) else f"{where}: {protocol}: {msg}") from None


def _resolved_options(protocol: str, options: Mapping) -> dict:
    """A protocol's options with every default filled in (what the cell id hashes)."""
    return _jsonable(_protocol_budget(protocol, options).to_dict())


def _dataset_dict(data: DataSpec, factors: str) -> dict:
    """The resolved generation config of one dataset (every generator default filled in); for an
    imported folder, its manifest's config hash (:meth:`~selfstudy.study.imported.ImportedData.identity`)."""
    if data.path:
        return data.imported.identity()
    return _jsonable(data.config(factors).to_dict())


def _check_labels(spec: Spec, where: str) -> None:
    """Every label count must fit in the training split of every dataset and, as subsets are
    class-balanced, need no more images of a class (``ceil(n / classes)``) than the training split's
    smallest class holds. The sizes come from the generator's split rule
    (:meth:`~selfstudy.data.generate.DatasetConfig.class_counts`), before anything is rendered.

    An imported dataset's counts come from its manifest: a label count must fit in its labeled training
    split; a class smaller than its balanced share gives all it has (nested and stratified; the plan
    notes it, :meth:`~selfstudy.study.imported.ImportedData.imbalance_note`)."""
    if spec.datasets.path:
        data = spec.datasets.imported
        for n in spec.labels:
            if n > data.train:
                raise UserError(f"{where}: label count {n} is larger than the labeled training split of "
                                f"dataset {data.name} ({data.train} images); allowed: at most {data.train} "
                                f"(labels: auto picks counts up to it), or label more images")
        return
    for f in spec.datasets.factors:
        cfg = spec.datasets.config(f)
        train = cfg.split_sizes()["train"]
        counts = cfg.class_counts()
        smallest = int(counts["train"].min()) if counts is not None else None
        name = Factors.parse(f).letters
        for n in spec.labels:
            if n > train:
                raise UserError(f"{where}: label count {n} is larger than the training split of dataset "
                                f"{name} ({train} images of datasets.n={spec.datasets.n}); allowed: at most "
                                f"{train}, or raise datasets.n")
            if smallest is not None and -(-n // NUM_CLASSES) > smallest:
                raise UserError(f"{where}: label count {n} needs {-(-n // NUM_CLASSES)} images per class but "
                                f"dataset {name}'s training split has only {smallest} of its smallest class "
                                f"(datasets.n={spec.datasets.n}); allowed: at most {smallest * NUM_CLASSES}, "
                                f"or raise datasets.n")


def _jsonable(value):
    """A JSON round-trip of ``value`` (tuples become lists), so configs compare equal after storage."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


# --- transfer and per-backbone options ------------------------------------------------------------


def pretrain_sources(data: DataSpec) -> tuple[str, ...]:
    """Factor bits of the datasets the SSL methods pretrain on (empty: each finetuning dataset its own)."""
    return tuple(data.pretrain_on)



def _factor_bits(items: list, key: str, where: str) -> list[str]:
    """Each factor string of ``items`` as bits, refusing a bad one or one given twice (``key`` names the list)."""
    bits = []
    for f in items:
        # YAML reads 0110 as the integer 110 (and 0000 as 0): give the digits back their zeros.
        s = f"{f:04d}" if isinstance(f, int) and not isinstance(f, bool) else str(f)
        try:
            b = Factors.parse(s).bits
        except UserError as e:
            raise UserError(f"{where}: {key}: {e}") from None
        if b in bits:
            raise UserError(f"{where}: {key} lists {Factors.parse(b).letters} twice")
        bits.append(b)
    return bits

def _pretrain_on(raw, factors: list[str], where: str) -> tuple[str, ...]:
    """``datasets.pretrain_on`` resolved: ``()`` (absent or ``same``), every dataset of ``factors``
    (``all``), or the listed datasets' factor bits."""
    if raw is None or raw == "same":
        return ()
    if raw == "all":
        return tuple(factors)
    if isinstance(raw, (str, int)) and not isinstance(raw, bool):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise UserError(f"{where}: datasets.pretrain_on must be all, same or a non-empty list of factor "
                        f"strings like [0000, TCVL], got {raw!r}")
    return tuple(_factor_bits(raw, "datasets.pretrain_on", where))


def protocol_options(options: Mapping[str, Any], backbone: str | None) -> dict:
    """A protocol section's options for ``backbone``: the shared ones (every key that is not a backbone
    name) with that backbone's own block merged over them."""
    shared = {k: v for k, v in options.items() if k not in BACKBONES}
    own = options.get(backbone) if backbone is not None else None
    return {**shared, **(dict(own) if isinstance(own, Mapping) else {})}


# --- imported datasets and weights arms -----------------------------------------------------------


#: The keys of ``datasets`` for an imported folder (the rest describe rendered data).
IMPORTED_DATASET_KEYS = ("path", "res")


def _imported_data_spec(raw: Mapping, where: str) -> DataSpec:
    """``datasets: {path: DIR}``: the folder ``selfstudy data import`` wrote. Its name stands where a
    factor string would (``factors``); ``res`` is the stored one (a ``res`` given must equal it)."""
    given = [k for k, v in raw.items() if k not in IMPORTED_DATASET_KEYS and v is not None]
    if given:
        raise UserError(f"{where}: datasets.path names an imported dataset, which takes only "
                        f"{', '.join(IMPORTED_DATASET_KEYS)}; datasets.{given[0]} describes rendered data "
                        f"(give datasets.factors or datasets.path, not both)")
    data = imported.read_imported(raw["path"], where)
    if raw.get("res") is not None and raw["res"] != data.res:
        raise UserError(f"{where}: datasets.res={raw['res']!r}, but the imported dataset {data.name} is "
                        f"{data.res} px; omit datasets.res or re-import with --res {raw['res']}")
    return DataSpec.load({"factors": (data.name,), "res": data.res, "path": data.path}, where=where,
                         prefix="datasets.")


def _auto_labels(data: DataSpec, where: str) -> tuple[int, ...]:
    """``labels: auto``: log-spaced counts up to the whole labeled training split
    (:func:`selfstudy.study.imported.auto_label_counts`)."""
    if data.path:
        return data.imported.auto_labels()
    cfg = data.config(data.factors[0])
    train = min(data.config(f).split_sizes()["train"] for f in data.factors)
    return imported.auto_label_counts(train, NUM_CLASSES) if cfg else ()


def _weights_arms(methods: tuple, backbones: tuple, res: int, where: str) -> tuple:
    """The weights arms of ``methods`` checked (file, backbone, a strict load) with their SHA-256."""
    out = []
    for m in methods:
        if m.is_weights:
            opts = arms.weights_options(m.name, {"path": m.path, "backbone": m.backbone}, backbones, res, where)
            m = MethodSpec.load({"name": m.name, **opts}, where=where, prefix=f"methods.{m.name}.")
        out.append(m)
    return tuple(out)


def dataset_label(key: str) -> str:
    """How a cell's dataset is shown: factor letters (``TCVL``), or an imported folder's name."""
    try:
        return Factors.parse(key).letters
    except UserError:
        return str(key)


# --- dataset blocks -------------------------------------------------------------------------------


def _data_blocks(raw, where: str) -> tuple[DataSpec, ...]:
    """``datasets`` given as a list of blocks, each read as one ``datasets`` mapping (``()``: not a
    list of blocks)."""
    if not isinstance(raw, list) or not any(isinstance(d, Mapping) for d in raw):
        return ()
    out = []
    for i, block in enumerate(raw):
        if not isinstance(block, Mapping):
            raise UserError(f"{where}: datasets[{i}] must be a mapping like {{factors: [TCVL], res: 64}} (a "
                            f"list of datasets is all blocks or all factor strings), got {block!r}")
        block = dict(block)
        tasks = block.pop("tasks", None)
        data = _data_spec(block, f"{where}: datasets[{i}]")
        if tasks is not None:
            data = dataclasses.replace(data, tasks=_tasks(tasks, f"{where}: datasets[{i}]"))
        out.append(data)
    return tuple(out)


def _block_tasks_default(raw):
    """The study's tasks when it gives none: every block's tasks in order (else :attr:`Spec.tasks`)."""
    if isinstance(raw, list) and raw and all(isinstance(d, Mapping) and d.get("tasks") for d in raw):
        out = []
        for d in raw:
            for t in ([d["tasks"]] if isinstance(d["tasks"], str) else d["tasks"]):
                out.append(t)
        return list(dict.fromkeys(out))
    return Spec.tasks


def _resolve_block_tasks(blocks: tuple[DataSpec, ...], tasks: tuple[str, ...],
                         where: str) -> tuple[DataSpec, ...]:
    """Every block's tasks are the study's (canonical spelling), and a task runs on a factor string in
    one block only (the report keys on dataset, backbone and task)."""
    owner: dict[tuple[str, str], int] = {}
    for i, b in enumerate(blocks):
        for t in b.tasks:
            if t not in tasks:
                raise UserError(f"{where}: datasets[{i}].tasks has {t!r}, which is not among the study's "
                                f"tasks; allowed: {', '.join(tasks)}")
        for t in (b.tasks or tasks):
            for f in b.factors:
                if _task_unavailable(t, f, b.multi):
                    continue
                j = owner.setdefault((f, t), i)
                if j != i:
                    raise UserError(f"{where}: task {t} would run on dataset {Factors.parse(f).letters} in datasets[{j}] "
                                    f"and datasets[{i}]; give each block its own tasks (datasets[i].tasks) so a "
                                    f"task runs on a dataset once")
    return blocks
