"""VICReg, Variance-Invariance-Covariance Regularization (Bardes, Ponce & LeCun, ICLR 2022): a modern
method beside the paper's four.

Two :class:`~selfstudy.data.augment.SimCLRAugment` views of every image, the backbone's pooled feature,
an expander of the same three-layer shape as Barlow Twins' projector
(:func:`~selfstudy.methods.barlow.mlp3`) and :func:`~selfstudy.methods.losses.vicreg_loss`: the two
views' embeddings are pulled together (invariance), every dimension's standard deviation is kept above
``gamma`` by a hinge (variance) and the dimensions are decorrelated (covariance). No negatives, no
momentum network.

Choices for this project's small backbones and CPU budgets, all settable: expander width 1024 (the
paper: 8192), the paper's weights 25 / 25 / 1 and gamma 1, Adam with the paper's schedule (lr 1e-3,
weight decay 1e-6) instead of LARS. Each view gets its own backbone pass unless ``joint_bn``.

Linear probes after toy-scale pretraining: docs/RESULTS.md §1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from selfstudy.config import option
from selfstudy.data.augment import SimCLRAugment
from selfstudy.methods.barlow import mlp3
from selfstudy.methods.base import Method, TwoViewConfig, encode_views
from selfstudy.methods.losses import vicreg_terms


class VICReg(Method):
    """Invariance between views, variance and decorrelation within each view.

    ``loss`` returns ``loss`` and its unweighted terms ``invariance``, ``variance``, ``covariance``, and
    ``features`` (detached pooled features of the first view).
    """

    name = "vicreg"

    @dataclass
    class Config(TwoViewConfig):
        sim_weight: float = option(25.0, ge=0)
        var_weight: float = option(25.0, ge=0)
        cov_weight: float = option(1.0, ge=0)
        gamma: float = option(1.0, gt=0)
        hidden_dim: int = option(1024, ge=1)
        proj_dim: int = 1024

        def min_batch_size(self) -> int:
            return 2  # variances and covariances over the batch

    def __init__(self, backbone: str, cfg: Config | None = None, **kw):
        super().__init__(backbone, cfg, **kw)
        self.projector = mlp3(self.backbone.out_dim, self.cfg.hidden_dim, self.cfg.proj_dim)
        self.augment = SimCLRAugment()

    def loss(self, batch: Mapping[str, Any]) -> dict:
        n, views = self.two_views(batch, "batch statistics")
        h = encode_views(self.backbone, views, self.cfg.joint_bn).pooled
        z = self.projector(h)
        c = self.cfg
        t = vicreg_terms(z[:n], z[n:], c.gamma)
        loss = c.sim_weight * t["invariance"] + c.var_weight * t["variance"] + c.cov_weight * t["covariance"]
        return {"loss": loss, **{k: v.detach() for k, v in t.items()}, "features": h[:n].detach().float()}
