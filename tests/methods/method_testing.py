"""Helpers shared by the method tests: tiny structured images, batches, a few Adam steps."""

import torch
import torch.nn.functional as F


def structured_images(n: int = 8, res: int = 16, seed: int = 0) -> torch.Tensor:
    """(n, 3, res, res) RGB in [0, 1]: random 4x4 colour layouts upsampled, so there is structure
    (edges, an orientation) for a method to learn, unlike pixel noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    return F.interpolate(coarse, size=(res, res), mode="bilinear", align_corners=False).clamp(0, 1)


def make_batch(x: torch.Tensor, seed: int = 0) -> dict:
    return {"images": x, "index": torch.arange(len(x)), "generator": torch.Generator().manual_seed(seed),
            "label": torch.zeros(len(x), dtype=torch.long)}


def train_steps(method, x: torch.Tensor, steps: int = 15, lr: float = 2e-3) -> list[float]:
    """Adam on one fixed batch with the same augmentation draw every step, with the method's
    ``after_step`` hook after each step as the training loop calls it; returns the losses."""
    opt = torch.optim.Adam(method.parameters(), lr=lr)
    losses = []
    for step in range(1, steps + 1):
        out = method(make_batch(x, seed=0))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        method.after_step(step, steps)
        losses.append(out["loss"].item())
    return losses
