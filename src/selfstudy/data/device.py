"""A dataset split as tensors on the training device, and batches as index gathers.

Small images fit in device memory, so a split is loaded once and every batch is ``data[idx]`` for an
index tensor: no DataLoader, no worker processes, no host-to-device copy per step. Images stay uint8 NHWC
there (4x smaller than float) and become float NCHW per batch with :func:`to_float`.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from selfstudy.data.store import Dataset
from selfstudy.errors import UserError

# numpy dtypes torch cannot hold, widened on load.
_WIDEN = {np.dtype("uint16"): np.int32, np.dtype("uint32"): np.int64}


def load_split(ds: Dataset, split: str | None, device: str | torch.device = "cpu",
               names: Sequence[str] = ("images", "label"),
               indices: np.ndarray | Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """Arrays ``names`` of one split of ``ds`` as tensors on ``device``.

    split: ``train``/``val``/``test``, or None for every image. indices: positions *within the split*
    (e.g. a labeled subset), or None for all of it. Every array keeps its stored dtype (images uint8
    (N, H, W, 3); depth float16), except unsigned types torch lacks, which are widened. The dict also
    holds ``"index"``: (N,) long, each row's index in the whole dataset.
    """
    rows = np.arange(len(ds)) if split is None else ds.indices(split)
    if indices is not None:
        sel = np.asarray(indices, dtype=np.int64).reshape(-1)
        if sel.size and (sel.min() < 0 or sel.max() >= len(rows)):
            raise UserError(f"indices must lie in [0, {len(rows)}) for split {split!r}, got "
                            f"[{sel.min()}, {sel.max()}]")
        rows = rows[sel]
    out = {}
    for name in names:
        arr = ds[name]
        # Fancy-indexing a memmap reads just those rows; a contiguous run reads as one slice. Both copy
        # into memory, so the tensor never aliases the read-only file.
        if len(rows) and np.all(np.diff(rows) == 1):
            chunk = np.array(arr[rows[0]:rows[-1] + 1])
        else:
            chunk = np.asarray(arr[rows])
        chunk = chunk.astype(_WIDEN.get(chunk.dtype, chunk.dtype), copy=False)
        out[name] = torch.from_numpy(np.ascontiguousarray(chunk)).to(device)
    out["index"] = torch.from_numpy(rows.astype(np.int64)).to(device)
    return out


def to_float(images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [0, 1].

    With ``channels_last`` the result is in torch's channels_last memory format, which is the stored
    NHWC layout already: no copy beyond the dtype conversion.
    """
    if images.ndim != 4 or images.dtype != torch.uint8:
        raise UserError(f"to_float needs uint8 (N, H, W, C) images, got {images.dtype} "
                        f"{tuple(images.shape)}")
    x = images.permute(0, 3, 1, 2).float().div_(255)
    if channels_last:
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


def iterate_batches(n: int, batch_size: int, generator: torch.Generator | None = None,
                    drop_last: bool = True, device: str | torch.device | None = None
                    ) -> Iterator[torch.Tensor]:
    """One epoch of index batches over ``range(n)``: (batch_size,) long tensors on ``device``.

    The order is a fresh permutation drawn from ``generator`` (so each call is a new epoch; the same
    generator state gives the same order), or ``0..n-1`` in order when generator is None (evaluation).
    With ``drop_last`` a final short batch is skipped, so every step sees a full batch.
    """
    if n < 0 or batch_size < 1:
        raise UserError(f"iterate_batches needs n >= 0 and batch_size >= 1, got n={n}, "
                        f"batch_size={batch_size}")
    if generator is None:
        order = torch.arange(n, device=device)
    else:
        order = torch.randperm(n, generator=generator, device=generator.device)
        order = order.to(device or generator.device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]
