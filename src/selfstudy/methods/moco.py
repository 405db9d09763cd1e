"""MoCo v2 (He et al., CVPR 2020; Chen, Fan, Girshick & He, arXiv 2003.04297): a modern method beside
the paper's four.

A query encoder (the backbone, then an MLP head ``Linear(d, d) -> ReLU -> Linear(d, proj_dim)``) and a
key encoder of the same shape whose weights are an exponential moving average of the query encoder's,

    theta_k <- m * theta_k + (1 - m) * theta_q,

and which gets no gradient. Two :class:`~selfstudy.data.augment.SimCLRAugment` views of every image;
the query of one view is contrasted (:func:`~selfstudy.methods.losses.info_nce`, temperature T) with
the key of the other view as its positive and a FIFO queue of K keys of earlier batches as negatives.
With ``symmetric`` (default, as MoCo v3) both view orders count and the loss is their mean, so its scale
does not depend on the flag; without it only view 1 queries view 2. After the loss the batch's N keys
of view 2 (one per image, so K counts images) replace the N oldest entries of the queue.

Choices for this project's short runs on small datasets, all settable:

* ``momentum`` 0.99 (the paper's 0.999 is for ~500k steps on ImageNet; a run of a few thousand steps
  would hardly move its key encoder away from the initialisation).
* ``queue_size`` K 4096 (MoCo's CIFAR recipe; 65536 on ImageNet), clamped to half the training split
  when ``num_train`` is known: the queue holds the keys of the last K images seen, so with K <= N/2
  it holds, most of the time, no older key of an image in the current batch (such a key would be a
  near-copy of the positive counted as a negative).
* ``temperature`` 0.2 (MoCo v2).
* Adam with the paper's schedule (lr 1e-3, weight decay 1e-6), like SimCLR here, instead of SGD.
* Each view gets its own backbone pass (BatchNorm statistics per view); ``joint_bn=true`` encodes
  both views in one pass per encoder (:func:`~selfstudy.methods.base.encode_views`).

When the update happens: after every optimizer step, through :meth:`after_step`, which the training
loop calls before it writes any checkpoint (MoCo's order: the keys of a step come from the key encoder
moved after the previous step). Only parameters are averaged: the key encoder's BatchNorm statistics
are its own running averages over the keys' batches. :meth:`loss` never moves the key encoder, and in
eval mode it leaves the queue alone too.

Shuffle-BN is not implemented. MoCo shuffles the key batch across GPUs so that a query and its key are
normalised with different batch statistics, which stops the network from recognising "same batch" from
BatchNorm statistics instead of image content. On one device a permutation changes no batch statistic,
so there is nothing to shuffle; the leak is mild at these batch sizes, and the key encoder and queue
still give MoCo's objective. Under several processes (``torchrun``) every rank pushes the keys of all
ranks' shards, gathered in rank order, as MoCo does, so the queues stay identical on every rank (the
loop does not broadcast buffers, which would keep rank 0's keys only).

The queue starts as K random unit vectors drawn from ``queue_seed`` (as MoCo's reference code), so the
first K / N steps contrast partly against noise.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from selfstudy.config import option
from selfstudy.core.distributed import all_gather_rows
from selfstudy.data.augment import SimCLRAugment
from selfstudy.methods.base import Method, TwoViewConfig, encode_views
from selfstudy.methods.losses import info_nce


@torch.no_grad()
def momentum_update_(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """The exponential moving average of MoCo's key encoder and BYOL's target network, in place:
    ``p_target <- momentum * p_target + (1 - momentum) * p_online`` for every parameter pair.

    ``target`` and ``online`` must have the same architecture (parameters pair up in registration
    order); buffers are left alone. ``momentum`` in [0, 1]: 0 copies ``online``, 1 keeps ``target``.
    """
    t, o = list(target.parameters()), list(online.parameters())
    if len(t) != len(o) or any(a.shape != b.shape for a, b in zip(t, o)):
        raise ValueError("momentum_update_: target and online networks differ in their parameters")
    # One fused kernel per op over all tensors instead of two per parameter (ResNet50 has ~160).
    torch._foreach_mul_(t, momentum)
    torch._foreach_add_(t, o, alpha=1.0 - momentum)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters take no gradient (and so are left out of every
    optimizer group built from ``requires_grad``), for a momentum/target network."""
    twin = copy.deepcopy(module)
    twin.requires_grad_(False)
    return twin


def queue_length(queue_size: int, num_train: int) -> int:
    """The queue's length K: ``queue_size``, at most half of ``num_train`` (at least 1) when the
    training split's size is known (``num_train > 0``); see the module doc for why."""
    if num_train <= 0:
        return queue_size
    return max(1, min(queue_size, num_train // 2))


class KeyQueue(nn.Module):
    """A FIFO ring of K unit keys, (K, D) float32, and the position of the next write.

    Both are buffers, so checkpoints carry them and a resumed run continues with the same negatives.
    :meth:`push` writes a batch's keys at ``ptr, ptr + 1, ...`` (mod K), overwriting the oldest, as if
    written one by one; a batch longer than K leaves its last K keys.

    Args:
        size: K >= 1.
        dim: D, the key width.
        seed: seeds the random unit vectors the queue starts with.
    """

    def __init__(self, size: int, dim: int, seed: int = 0):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"KeyQueue needs size >= 1 and dim >= 1, got {size} and {dim}")
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("keys", F.normalize(torch.randn(size, dim, generator=g), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return self.keys.shape[0]

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        """Enqueue ``keys`` (n, D), dropping the n oldest entries (all of them when n >= K)."""
        size, n = len(self), keys.shape[0]
        if keys.dim() != 2 or keys.shape[1] != self.keys.shape[1]:
            raise ValueError(f"KeyQueue.push needs (n, {self.keys.shape[1]}) keys, got {tuple(keys.shape)}")
        keep = keys[-size:]
        skipped = n - keep.shape[0]  # keys overwritten within this same batch
        # Positions computed on the device from the pointer tensor: no host sync per step.
        pos = (self.ptr + skipped + torch.arange(keep.shape[0], device=self.keys.device)) % size
        self.keys.index_copy_(0, pos, keep.detach().to(self.keys.dtype))
        self.ptr.copy_((self.ptr + n) % size)


def mlp_head(in_dim: int, out_dim: int) -> nn.Sequential:
    """MoCo v2's projection head: ``Linear(d, d) -> ReLU -> Linear(d, out_dim)`` (no BatchNorm)."""
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim))


class MoCo(Method):
    """MoCo v2: contrast queries against momentum-encoded keys and a queue of earlier keys.

    ``loss`` returns ``loss`` (InfoNCE, the mean of both view orders when ``symmetric``), ``key_accuracy``
    (how often a query's positive outscores every queued key) and ``features`` (detached pooled
    features of the first view). Attributes: ``backbone`` and ``projector`` (trained), ``key_backbone``
    and ``key_projector`` (their moving averages, no gradient), ``queue`` (a :class:`KeyQueue`).
    """

    name = "moco"

    @dataclass
    class Config(TwoViewConfig):
        momentum: float = option(0.99, ge=0, lt=1)
        queue_size: int = option(4096, ge=1)
        temperature: float = option(0.2, gt=0)
        symmetric: bool = True
        queue_seed: int = 0

    def __init__(self, backbone: str, cfg: Config | None = None, **kw):
        super().__init__(backbone, cfg, **kw)
        self.projector = mlp_head(self.backbone.out_dim, self.cfg.proj_dim)
        self.key_backbone = frozen_copy(self.backbone)
        self.key_projector = frozen_copy(self.projector)
        self.queue = KeyQueue(queue_length(self.cfg.queue_size, self.num_train), self.cfg.proj_dim,
                              self.cfg.queue_seed)
        self.augment = SimCLRAugment()

    def after_step(self, step: int, total_steps: int) -> None:
        """Move the key encoder toward the query encoder the optimizer step just produced."""
        momentum_update_(self.key_backbone, self.backbone, self.cfg.momentum)
        momentum_update_(self.key_projector, self.projector, self.cfg.momentum)

    def loss(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        n, (v1, v2) = self.two_views(batch)
        # Symmetric: view 1 then view 2 as queries, keys in the swapped order.
        q_in, k_in = ([v1, v2], [v2, v1]) if self.cfg.symmetric else ([v1], [v2])
        h = encode_views(self.backbone, q_in, self.cfg.joint_bn).pooled
        q = self.projector(h)
        with torch.no_grad():
            k_out = encode_views(self.key_backbone, k_in, self.cfg.joint_bn).pooled
            k = F.normalize(self.key_projector(k_out).float(), dim=1)
        # A copy: the push below writes the queue in place, and autograd keeps the negatives for the
        # backward pass. The queue holds only keys of earlier batches, never this batch's positives.
        negatives = self.queue.keys.clone()
        t = self.cfg.temperature
        loss = info_nce(q, k, negatives, t)  # the mean over 2N queries is the mean of both orders
        with torch.no_grad():
            qn = F.normalize(q.detach().float(), dim=1)
            pos = (qn * k).sum(dim=1)
            key_accuracy = (pos > (qn @ negatives.t()).max(dim=1).values).float().mean()
        if self.training:
            # The keys of view 2, one per image, of every rank's shard in rank order (MoCo's
            # concat_all_gather): every rank pushes the same keys, so the queues stay identical.
            self.queue.push(all_gather_rows(k[:n]))
        return {"loss": loss, "key_accuracy": key_accuracy, "features": h[:n].detach().float()}
