"""Self-supervised pretraining: a dataset and a method in, a transferable checkpoint out.

:func:`pretrain` loads the training split onto the device, fits the input normalisation to it, builds
the method, and trains it with the one :class:`~selfstudy.train.loop.Trainer`. Beside the method it
trains an **online linear probe** (docs/PAPER.md §5.5): a ``Linear(D -> 10)`` on the *detached* pooled
features the method returns (standardised by a BatchNorm without affine parameters), on the dataset's
class labels, so every epoch's log line says how linearly
separable the classes are in the features so far, at no cost to the backbone (its gradient stops at the
features).

A run folder holds ``last.pt`` (full resumable state), ``log.jsonl`` (one line per epoch) and, at the
end, ``final.pt``::

    {"format": 1,
     "transfer": method.transfer_state(),      # what finetuning loads (load_transfer)
     "method_config": {...}, "train_config": {...},
     "dataset": {"path", "config", "config_hash"},
     "identity": {...},                        # what the run is, checked when rerun into the folder
     "history": [per-epoch records]}

Rerunning the same call into the same folder resumes (or, if finished, just rewrites ``final.pt``).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from selfstudy.config import convert_field, parse_overrides
from selfstudy.core import distributed
from selfstudy.core.constants import PRECISIONS
from selfstudy.core.device import resolve_device
from selfstudy.data.colour import SPACES, InputTransform
from selfstudy.data.device import load_split, to_float
from selfstudy.errors import UserError
from selfstudy.methods import METHODS, build_method
from selfstudy.models import BACKBONES, build_backbone
from selfstudy.scene.classes import NUM_CLASSES
from selfstudy.train.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from selfstudy.train.inputs import names_a_folder, open_data
from selfstudy.train.loop import AfterStep, TrainConfig, Trainer

FINAL_FORMAT = 1
#: Online probe optimiser settings: its own parameter group, so the SSL schedule does not starve it.
PROBE_LR, PROBE_FINAL_LR = 1e-2, 1e-3
#: Method config fields that are also TrainConfig fields: the method's defaults feed the loop.
SHARED = ("lr", "final_lr", "weight_decay", "betas", "batch_size", "epochs", "warmup_epochs")
#: TrainConfig fields that pretrain() sets from its own arguments, not from overrides.
_FROM_ARGUMENTS = ("seed", "precision", "channels_last")


class PretrainModule(nn.Module):
    """The method and its online linear probe as one module (so DDP keeps both in sync).

    ``forward(batch)`` takes the loop's batch (``images`` uint8 NHWC, ``label``, ``index``,
    ``generator``), converts images to RGB [0, 1] NCHW for the method, and returns the method's terms
    with ``loss`` = SSL loss + probe loss (the probe sees detached features, so its loss trains only
    the probe), ``ssl_loss``, ``probe_loss`` and ``probe_accuracy``.
    """

    def __init__(self, method: nn.Module, num_classes: int | None, channels_last: bool = False):
        super().__init__()
        self.method = method
        self.channels_last = channels_last
        self.probe = None
        if num_classes:
            # Standardise the features first (BatchNorm without affine, as MAE's linear probe): raw
            # pooled features can be tiny or huge, which would make a linear layer under Adam learn
            # far too slowly or unstably; the standardisation is itself linear, so the probe stays one.
            dim = method.encoder().out_dim
            self.probe = nn.Sequential(nn.BatchNorm1d(dim, affine=False), nn.Linear(dim, num_classes))

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        b = dict(batch)
        b["images"] = to_float(batch["images"], channels_last=self.channels_last)
        out = dict(self.method.loss(b))
        features = out.pop("features", None)
        rows = out.pop("feature_rows", None)  # which batch rows ``features`` belong to, if not the first
        if self.probe is not None and features is not None and "label" in batch:
            labels = batch["label"][rows] if rows is not None else batch["label"][:len(features)]
            logits = self.probe(features.detach().float())
            probe_loss = F.cross_entropy(logits.float(), labels)
            out["ssl_loss"] = out["loss"].detach()
            out["loss"] = out["loss"] + probe_loss
            out["probe_loss"] = probe_loss.detach()
            out["probe_accuracy"] = (logits.argmax(1) == labels).float().mean()
        return out


# ------------------------------------------------------------------------------------------ overrides
def split_overrides(method_cls: type, overrides: Mapping[str, Any] | Sequence[str] | None) -> tuple[dict, dict]:
    """Route each override to the method's config or the train config; unknown keys -> UserError.

    ``overrides`` is a dict or ``key=value`` strings (:func:`selfstudy.config.parse_overrides`). A key
    the method's config has (its hyper-parameters, and the shared ``lr``, ``batch_size``, ``epochs``
    ...) goes to the method, which converts it; the remaining train-loop keys (``steps``,
    ``optimizer``, ``grad_clip``, ``checkpoint_every`` ...) to the train config, converted here to their
    field type and checked against its rule (:func:`selfstudy.config.convert_field`).
    """
    if overrides is None:
        overrides = {}
    elif not isinstance(overrides, Mapping):
        overrides = parse_overrides(overrides)
    method_keys = [f.name for f in dataclasses.fields(method_cls.Config)]
    train_keys = [f.name for f in dataclasses.fields(TrainConfig)
                  if f.name not in method_keys and f.name not in _FROM_ARGUMENTS]
    unknown = sorted(set(overrides) - set(method_keys) - set(train_keys))
    if unknown:
        near = difflib.get_close_matches(unknown[0], method_keys + train_keys, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise UserError(f"unknown option(s) {', '.join(unknown)} for {method_cls.name}; allowed: "
                        f"{', '.join(method_keys)} (method), {', '.join(train_keys)} (training){hint}")
    m = {k: v for k, v in overrides.items() if k in method_keys}
    t = {k: convert_field(TrainConfig, k, v) for k, v in overrides.items() if k in train_keys}
    return m, t


# --------------------------------------------------------------------------------------------- driver
def pretrain(data: str | os.PathLike, method: str, backbone: str, *, res: int | None = None,
             epochs: int | None = None, out: str | os.PathLike, seed: int = 0,
             overrides: Sequence[str] | Mapping[str, Any] | None = None, space: str = "rgb",
             device: str | torch.device = "cpu", precision: str = "fp32", channels_last: bool = False,
             num_images: int | None = None, progress: bool = True,
             callbacks: Sequence[Any] = ()) -> Path:
    """Pretrain ``method`` on ``backbone`` and return the path of ``out/final.pt``.

    Args:
        data: a dataset folder (or an opened :class:`~selfstudy.data.store.Dataset`), or a factor
            string (``"TCVL"``, ``"0110"``), in which case the dataset is generated once (or reused)
            by :func:`selfstudy.data.generate.ensure_dataset` (:func:`selfstudy.train.inputs.open_data`).
        method, backbone: registry names (``rotation``; ``resnet9-tiny``).
        res: input resolution in pixels. For a dataset folder it must equal the dataset's (default);
            for a factor string it picks the rendered resolution. Checked against the backbone.
        epochs: passes over the training split (default: the method's config).
        out: the run folder (``last.pt``, ``log.jsonl``, ``final.pt``).
        seed: initialisation, permutation and augmentation seed.
        overrides: ``key=value`` strings or a dict, for the method's config (``lr``, ``temperature``,
            ``batch_size`` ...) or the train config (``steps``, ``optimizer``, ``grad_clip`` ...).
        space: ``rgb`` or ``lab`` model input; the normalisation is fitted on the training split.
        device: ``cpu`` or ``cuda`` (under ``torchrun`` each process takes its own GPU).
        precision, channels_last: see :class:`TrainConfig`.
        num_images: for a factor string, the dataset size to generate; for a folder, train on the
            first ``num_images`` images of the pool (train split and unlabeled images) only.
        progress: show progress bars (on a terminal).
        callbacks: :class:`~selfstudy.train.loop.Callback` objects passed to the training loop.
    """
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    if backbone not in BACKBONES:
        raise UserError(f"unknown backbone {backbone!r}; allowed: {', '.join(BACKBONES)}")
    if space not in SPACES:
        raise UserError(f"unknown colour space {space!r}; allowed: {', '.join(SPACES)}")
    if epochs is not None and not (isinstance(epochs, int) and epochs >= 1):
        raise UserError(f"epochs must be an integer >= 1, got {epochs!r}")
    if num_images is not None and not (isinstance(num_images, int) and num_images >= 1):
        raise UserError(f"num_images must be an integer >= 1, got {num_images!r}")
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if precision == "fp16" and not str(device).startswith("cuda"):
        raise UserError("precision fp16 needs a CUDA device (it relies on loss scaling); "
                        "on a CPU use bf16 or fp32")
    method_over, train_over = split_overrides(METHODS[method], overrides)
    if epochs is not None:
        method_over["epochs"] = epochs
    if "steps" in train_over and "epochs" in method_over:
        raise UserError("give epochs or steps, not both")
    # Refuse bad values now, before any data is rendered or read.
    METHODS[method].Config.from_overrides(method_over, backbone=backbone, res=res)
    TrainConfig(**{"epochs": None if "steps" in train_over else 1.0, **train_over}).validate()
    probe_backbone = build_backbone(backbone)  # to validate the resolution before any work
    if res is not None:
        probe_backbone.check_input_res(res)

    device = str(device)  # a torch.device works too
    dist = distributed.init_from_env(device)
    device = resolve_device(device, dist)
    ds = open_data(data, res, num_images, progress=progress and dist.is_main, res_name="res")
    ds_res = int(ds["images"].shape[1])
    probe_backbone.check_input_res(ds_res)
    del probe_backbone

    # The pool: the train split plus any unlabeled images (an imported dataset); never val or test.
    pool = ds.pool_indices()
    if num_images is not None and names_a_folder(data):
        pool = pool[:num_images]
    train = load_split(ds, None, device, names=("images", "label"), indices=pool)
    train.pop("index")  # the loop's batch["index"] is the position in these tensors (CMC's bank)
    input_tf = InputTransform.fit(train["images"], space)

    torch.manual_seed(seed)  # initialisation of the method's and the probe's weights
    m = build_method(method, backbone, method_over, in_channels=3, num_train=len(train["images"]),
                     input_state=input_tf.state(), res=ds_res)
    mcfg = m.cfg
    shared = {k: getattr(mcfg, k) for k in SHARED}
    if "steps" in train_over:
        shared["epochs"] = None
    else:
        shared["epochs"] = float(shared["epochs"])
    cfg = TrainConfig(**{**shared, **train_over, "seed": seed, "precision": precision,
                         "channels_last": channels_last}).validate()

    labels = train["label"]
    # The paper's 10 classes; more only if a dataset has more labels.
    num_classes = max(NUM_CLASSES, int(labels.max()) + 1) if bool((labels >= 0).all()) else None
    if num_classes is None:
        train.pop("label")  # multi-object scenes have no image label: no online probe
    module = PretrainModule(m, num_classes, channels_last=channels_last).to(device)
    groups = [{"params": [p for p in m.parameters() if p.requires_grad]}]
    if module.probe is not None:
        groups.append({"params": list(module.probe.parameters()), "lr": PROBE_LR,
                       "final_lr": PROBE_FINAL_LR, "weight_decay": 0.0})

    out = Path(out)
    identity = {"method": method, "backbone": backbone, "method_config": mcfg.to_dict(),
                "dataset": ds.manifest.get("config_hash"), "res": ds_res, "space": space,
                "num_train": len(train["images"])}
    final_path = out / "final.pt"
    if final_path.is_file() and not (out / "last.pt").is_file():
        check_compatible(final_path, load_checkpoint(final_path, "pretrained checkpoint").get("identity", {}),
                         identity)
    trainer = Trainer(module, cfg, train, out_dir=out, param_groups=groups, identity=identity,
                      progress=progress, desc=f"pretrain {method}",
                      callbacks=[AfterStep(module.method.after_step), *callbacks])
    history = trainer.run()

    if dist.is_main:
        final = {
            "format": FINAL_FORMAT,
            "transfer": m.transfer_state(),
            "method_config": mcfg.to_dict(),
            "train_config": dataclasses.asdict(cfg),
            "dataset": {"path": str(ds.path), "config": ds.config,
                        "config_hash": ds.manifest.get("config_hash")},
            "identity": identity,
            "history": history,
        }
        save_checkpoint(final_path, final)
    distributed.barrier()
    return final_path


def load_transfer(path: str | os.PathLike) -> dict:
    """The ``transfer`` state of a pretraining run (``final.pt``, or a run folder holding one).

    Returns ``{"method", "backbone", "state_dict", "input", "out_dim"}``. Loaded with
    ``weights_only=True``; a file that is not a selfstudy pretraining checkpoint raises
    :class:`UserError`.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "final.pt"
        if not path.is_file():
            raise UserError(f"{path.parent} holds no final.pt; is the pretraining run finished?")
    state = load_checkpoint(path, what="pretrained checkpoint")
    transfer = state.get("transfer")
    need = ("method", "backbone", "state_dict", "input")
    if not isinstance(transfer, dict) or any(k not in transfer for k in need):
        raise UserError(f"{path} is not a selfstudy pretraining checkpoint (it needs a 'transfer' entry "
                        f"with {', '.join(need)}); pass the final.pt of `selfstudy pretrain`")
    if not isinstance(transfer["state_dict"], dict) or not all(
            isinstance(v, torch.Tensor) for v in transfer["state_dict"].values()):
        raise UserError(f"{path}: the transfer state_dict is malformed; re-run the pretraining")
    return transfer
