"""Scratch baselines on another method's architecture, and which baseline a method's utility uses.

CMC finetunes its own encoder: two half-width streams, one on the luma and one on the chroma
channels, concatenated (docs/PAPER.md §3, §4.3). Plain ``scratch`` trains the full backbone, so CMC's
utility against it mixes what pretraining taught with what the architecture does. ``scratch-cmc``
trains CMC's two-stream network from a fresh initialisation: :func:`scratch_init` builds that
network with untrained weights as a transfer state, which finetuning loads like a pretrained one
(its input normalisation fitted on the training split, as scratch's is).

:func:`baseline_of` says which scratch arm a method's utility is computed against: the scratch arm on
its own architecture when the study ran one, else ``scratch``.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from selfstudy.core.constants import SCRATCH
from selfstudy.data.colour import InputTransform
from selfstudy.methods import METHODS
from selfstudy.methods.cmc import cmc_stream_backbone
from selfstudy.study.spec import BASELINES, SCRATCH_ARCHS

__all__ = ["BASELINES", "SCRATCH_ARCHS", "baseline_of", "scratch_init"]


def baseline_of(method: str, methods: Iterable[str]) -> str:
    """The arm ``method``'s utility is computed against among the study's ``methods``: the scratch arm
    on its own architecture (``cmc`` -> ``scratch-cmc``) when present, else ``scratch``."""
    own = BASELINES.get(method)
    return own if own is not None and own in set(methods) else SCRATCH


def scratch_init(ds, name: str, backbone: str, seed: int, space: str) -> dict[str, Any]:
    """A transfer state of scratch arm ``name``'s architecture with freshly initialised weights.

    ds: the opened dataset (its training split fits the input normalisation); backbone: the study's
    backbone name (the method derives its streams from it); seed: seeds the initialisation (the same
    seed gives the same weights); space: ``rgb`` or ``lab``.
    """
    arch = SCRATCH_ARCHS[name]
    rows = np.asarray(ds.indices("train"))
    images = ds["images"]

    class _Rows:  # the training rows of a memory-mapped array, read only where sampled
        shape = (len(rows), *images.shape[1:])
        dtype = images.dtype

        def __getitem__(self, i):
            return images[rows[i]]

    tf = InputTransform.fit(_Rows(), space)
    state = {"method": arch, "backbone": backbone, "input": tf.state()}
    if arch == "cmc":
        state["stream_backbone"] = cmc_stream_backbone(backbone)
    cpu = torch.random.get_rng_state()
    try:
        torch.manual_seed(int(seed) * 7919 + 17)
        enc = METHODS[arch].build_encoder(state)
    finally:
        torch.random.set_rng_state(cpu)
    state["state_dict"] = {k: v.detach().cpu().clone() for k, v in enc.state_dict().items()}
    state["out_dim"] = enc.out_dim
    return state
