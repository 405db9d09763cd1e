"""The base of every self-supervised method: its config, its input transform, its backbone.

A method is a small subclass of :class:`Method` with a ``name``, a nested ``Config`` dataclass holding
the paper's hyper-parameters (docs/PAPER.md §4, §6.1) and a :meth:`Method.loss`. The base owns what they
share: building the backbone, the input transform (RGB in [0, 1] -> the model's colour space,
normalised), the encoder that downstream protocols reuse and the state they load (:meth:`transfer_state`).

Epochs here are real passes over the training split. The paper's "epoch" was a block of 50k samples
(25k image pairs for AMDIM) on ~400k training images (docs/PAPER.md §6.2), so its R rounds are R / 8 real
passes: each method's default ``epochs`` is that translation for ResNet9 (ResNet50 in
:meth:`MethodConfig.paper_defaults`). The warm-up is 5 real epochs, longer in samples than the paper's
5 blocks; lower ``warmup_epochs`` for short runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import nn

from selfstudy.config import Config, option
from selfstudy.data.colour import InputTransform
from selfstudy.errors import UserError
from selfstudy.models import build_backbone
from selfstudy.models.base import BackboneOutput

@dataclass
class MethodConfig(Config):
    """Hyper-parameters shared by every method; subclasses change the defaults and add fields.

    ``lr`` is the peak rate after a linear warm-up of ``warmup_epochs``, then linear decay to
    ``final_lr`` (docs/PAPER.md §6.1); Adam with ``betas``, ``weight_decay`` being Adam's L2 penalty as in
    the paper. ``epochs`` are real passes over the data. Every field carries its allowed range
    (:func:`selfstudy.config.option`); a subclass that only changes a default keeps the rule.
    """

    method: ClassVar[str] = "method"
    config_name: ClassVar[str] = "method"
    unknown_message: ClassVar[str] = "{where}: unknown option(s) {keys}{hint}; allowed: {allowed}"

    lr: float = option(1e-3, gt=0)
    final_lr: float = option(1e-6, ge=0)
    weight_decay: float = option(1e-5, ge=0)
    batch_size: int = option(256, ge=1)
    epochs: int = option(100, ge=1)
    warmup_epochs: int = option(5, ge=0)
    betas: tuple[float, float] = option((0.8, 0.999), ge=0, lt=1, allowed="two numbers in [0, 1)")

    # --- construction ------------------------------------------------------------------------------
    @classmethod
    def paper_defaults(cls, backbone: str) -> dict[str, Any]:
        """Values the paper used for ``backbone`` where they differ from the ResNet9 defaults.

        The base has none; methods return their ResNet50 settings for ``resnet50*`` names.
        """
        return {}

    @classmethod
    def resolution_defaults(cls, res: int) -> dict[str, Any]:
        """Defaults that follow the training resolution ``res`` (pixels); none in the base."""
        return {}

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | None = None, *,
                       backbone: str | None = None, res: int | None = None) -> "MethodConfig":
        """The defaults (for ``backbone`` and ``res`` if given), then ``overrides``, converted and
        validated (:func:`selfstudy.config.load`).

        Values may be strings (from a command line: ``"1e-3"``, ``"true"``, ``"0.8,0.999"``). Unknown
        keys and values that do not convert raise :class:`UserError` naming the allowed keys or type.
        """
        values = {**(cls.paper_defaults(backbone) if backbone else {}),
                  **(cls.resolution_defaults(res) if res else {}), **dict(overrides or {})}
        return cls.load(values)

    # --- validation --------------------------------------------------------------------------------
    def check(self) -> None:
        """Rules between fields and the method's own (:meth:`min_batch_size`); raise :class:`UserError`."""
        self.require(self.batch_size >= self.min_batch_size(), "batch_size",
                     f"an integer >= {self.min_batch_size()}")

    def min_batch_size(self) -> int:
        """The smallest batch the loss is defined for (contrastive losses need negatives)."""
        return 1


@dataclass
class TwoViewConfig(MethodConfig):
    """What the modern two-view methods here share (SimCLR, MoCo, BYOL, Barlow Twins, VICReg): Adam with
    the paper's schedule at a peak of 1e-3 decaying to 1e-6, weight decay 1e-6 (instead of LARS or SGD;
    batches here are small), a projection of width ``proj_dim``, and ``joint_bn`` (one backbone pass
    over both views instead of one per view, :func:`encode_views`)."""

    lr: float = 1e-3
    final_lr: float = 1e-6
    weight_decay: float = 1e-6
    proj_dim: int = option(128, ge=1)
    joint_bn: bool = False


class Method(nn.Module):
    """A self-supervised method: backbone(s) + heads + loss (see DESIGN.md "SSL methods").

    Subclasses set ``name`` and a nested ``Config`` (a :class:`MethodConfig` subclass), build their
    backbone(s) and heads in ``__init__`` after calling ``super().__init__`` and implement
    :meth:`loss`. The base builds ``self.backbone`` unless the subclass sets ``builds_backbone =
    False`` (CMC builds two streams).

    Args:
        backbone: a name from ``selfstudy.models.BACKBONES``.
        cfg: the method's config (default: the paper's values for ``backbone``).
        in_channels: channels of the model input; methods read RGB images, so this must be 3.
        num_train: size of the training split (CMC's memory bank); 0 when unknown.
        input_state: :meth:`InputTransform.state` of the normalisation to use (default: the paper's
            LAB statistics).
    """

    name: ClassVar[str] = "method"
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    builds_backbone: ClassVar[bool] = True

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "Config" in cls.__dict__:
            cls.Config.method = cls.Config.config_name = cls.name  # so config errors name the method

    def __init__(self, backbone: str, cfg: MethodConfig | None = None, *, in_channels: int = 3,
                 num_train: int = 0, input_state: Mapping | None = None):
        super().__init__()
        if in_channels != 3:
            raise UserError(f"{self.name}: in_channels must be 3 (methods read RGB images and convert "
                            f"them with their input transform), got {in_channels!r}")
        if not isinstance(num_train, int) or num_train < 0:
            raise UserError(f"{self.name}: num_train must be an integer >= 0, got {num_train!r}")
        if cfg is None:
            cfg = self.Config.from_overrides(backbone=backbone)
        elif not isinstance(cfg, self.Config):
            raise TypeError(f"{self.name} needs a {self.Config.__qualname__}, got {type(cfg).__name__}")
        cfg.validate()
        self.cfg = cfg
        self.backbone_name = backbone
        self.num_train = num_train
        self.input = InputTransform() if input_state is None else InputTransform.from_state(input_state)
        if self.builds_backbone:
            self.backbone = build_backbone(backbone, in_channels=3)

    # --- the interface the training loop and the protocols use ------------------------------------
    def loss(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:  # pragma: no cover
        """Augment ``batch["images"]`` (RGB [0, 1] NCHW), encode, and return ``{"loss": scalar, ...}``
        plus optionally ``"features"``: detached pooled features of the first view, (N, D), or of the batch
        rows named by ``"feature_rows"`` when only some rows have them (Rotation: the upright ones)."""
        raise NotImplementedError

    def after_step(self, step: int, total_steps: int) -> None:
        """Called by the training loop right after optimizer step ``step`` (1-based) of
        ``total_steps``; the base does nothing. MoCo and BYOL move their momentum networks here."""

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Same as :meth:`loss`, so that DistributedDataParallel's hooks fire."""
        return self.loss(batch)

    def encoder(self) -> nn.Module:
        """The network downstream protocols keep: input (N, 3, H, W) normalised by ``self.input``,
        output ``BackboneOutput``."""
        return self.backbone

    def transfer_state(self) -> dict[str, Any]:
        """What finetuning loads: ``{"method", "backbone", "state_dict", "input", "out_dim"}``.

        ``state_dict`` is the encoder's (tensors on the CPU); rebuild the encoder with
        :func:`selfstudy.methods.build_encoder`.
        """
        enc = self.encoder()
        return {"method": self.name, "backbone": self.backbone_name,
                "state_dict": {k: v.detach().cpu().clone() for k, v in enc.state_dict().items()},
                "input": self.input.state(), "out_dim": enc.out_dim}

    @classmethod
    def build_encoder(cls, state: Mapping[str, Any]) -> nn.Module:
        """A freshly initialised encoder of the shape :meth:`transfer_state` describes (load
        ``state["state_dict"]`` into it)."""
        return build_backbone(state["backbone"], in_channels=3)

    # --- helpers for subclasses --------------------------------------------------------------------
    def two_views(self, batch: Mapping[str, Any], why: str | None = None) -> tuple[int, list[torch.Tensor]]:
        """The batch's N images augmented twice by ``self.augment`` (independent draws from the batch's
        generator) and normalised by ``self.input``: ``(N, [view1, view2])``, each (N, 3, H, W).

        ``why``, when given, is what needs at least two images per batch (for the error otherwise)."""
        x, gen = self.unpack(batch)
        n = x.shape[0]
        if why is not None and n < 2:
            raise ValueError(f"{self.name} needs at least 2 images per batch ({why}), got {n}")
        return n, [self.input(self.augment(x, gen)), self.input(self.augment(x, gen))]

    @staticmethod
    def unpack(batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Generator]:
        """``(images, generator)`` of a batch, checked: images (N, 3, H, W) floating point."""
        x, gen = batch["images"], batch["generator"]
        if not (isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1] == 3
                and x.is_floating_point()):
            raise ValueError("batch['images'] must be a float (N, 3, H, W) RGB tensor in [0, 1], got "
                             f"{getattr(x, 'dtype', type(x))} {tuple(getattr(x, 'shape', ()))}")
        if not isinstance(gen, torch.Generator):
            raise ValueError(f"batch['generator'] must be a torch.Generator, got {type(gen).__name__}")
        return x, gen


def encode_views(encoder: nn.Module, views: Sequence[torch.Tensor], joint: bool = False,
                 maps: Sequence[str] = ()):
    """Encode the augmented ``views`` of one batch (each (N, C, H, W), already normalised) and return
    one ``BackboneOutput`` whose rows are view 1's N, then view 2's, ...: ``pooled`` and the feature
    maps named in ``maps`` (only those: concatenating the others would cost copies nobody reads).

    ``joint=False`` (the default of every multi-view method here): one forward pass per view, so
    BatchNorm normalises each view with its own batch statistics, as solo-learn and lightly encode
    views. ``joint=True``: one pass over all views concatenated, so BatchNorm sees all of them at
    once (SimCLR's global BN, AMDIM's original code). The objective is the same; the batch statistics
    differ. Per-view passes are faster on a CPU, while a GPU is usually faster with one large pass
    (docs/RESULTS.md §3).
    """
    if joint or len(views) == 1:
        out = encoder(torch.cat(list(views)) if len(views) > 1 else views[0])
        return BackboneOutput(out.pooled, {k: out.maps[k] for k in maps})
    outs = [encoder(v) for v in views]
    return BackboneOutput(torch.cat([o.pooled for o in outs]),
                          {k: torch.cat([o.maps[k] for o in outs]) for k in maps})


def randn(gen: torch.Generator, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """Standard normal draws from ``gen`` on its own device, moved to ``like``'s device and dtype
    (the generator may live on the CPU while the model runs on a GPU)."""
    return torch.randn(shape, generator=gen, device=gen.device).to(like.device, like.dtype)


def randint(gen: torch.Generator, high: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Uniform integers in [0, high) from ``gen``, moved to ``device``."""
    return torch.randint(high, shape, generator=gen, device=gen.device).to(device)
