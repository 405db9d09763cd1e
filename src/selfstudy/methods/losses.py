"""Pure loss functions of the self-supervised methods (no state, no randomness).

Each function documents its formula and the paper it comes from; ``tests/methods/test_losses.py``
checks each against a hand-computed value. Shapes: N batch, D embedding width, K negatives,
L locations of a feature map.

The similarity products run in float32 with autocast off: under bf16 autocast a matmul would round the
logits to ~3 significant digits, too coarse once divided by a temperature of 0.1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _fp32(x: torch.Tensor) -> torch.autocast:
    """A context that turns autocast off on ``x``'s device (use with ``.float()`` inputs)."""
    return torch.autocast(x.device.type, enabled=False)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al., ICML 2020).

    With the 2N embeddings ``u = normalise([z1; z2])`` and ``s_ij = u_i . u_j / temperature``, every
    sample i has one positive p(i) (its other view) and 2N - 2 negatives (every other sample)::

        loss = mean_i  -log( exp(s_i,p(i)) / sum_{k != i} exp(s_ik) )

    Symmetric in the two views. ``z1, z2``: (N, D) with N >= 2 (a single pair has no negatives).
    Returns a scalar.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"nt_xent needs two (N, D) tensors of one shape, got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    n = z1.shape[0]
    with _fp32(z1):
        u = F.normalize(torch.cat([z1, z2]).float(), dim=1)
        logits = u @ u.t() / temperature
    # A sample is not its own negative: -inf removes it from the denominator.
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=u.device), float("-inf"))
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(u.device)
    return F.cross_entropy(logits, positive)


def nce_softmax(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                temperature: float) -> torch.Tensor:
    """The softmax ("NCE-softmax") criterion of CMC (Tian et al., ECCV 2020), positive at index 0.

    With logits ``l_0 = a . p / T`` and ``l_k = a . n_k / T`` (k = 1..K)::

        loss = mean_over_anchors  -log( exp(l_0) / sum_{k=0..K} exp(l_k) )

    i.e. cross-entropy of K + 1 logits with target 0. Embeddings are used as given (CMC's are already
    L2-normalised).

    Args:
        anchor: (N, D).
        positive: (N, D), the positive of each anchor.
        negatives: (K, D), shared by every anchor, or (N, K, D), one set per anchor.
        temperature: T > 0.
    Returns a scalar.
    """
    with _fp32(anchor):
        anchor, positive, negatives = anchor.float(), positive.float(), negatives.float()
        pos = (anchor * positive).sum(dim=1, keepdim=True)             # (N, 1)
        if negatives.dim() == 2:
            neg = anchor @ negatives.t()                               # (N, K)
        else:
            neg = torch.einsum("nd,nkd->nk", anchor, negatives)
        logits = torch.cat([pos, neg], dim=1) / temperature
    target = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)


def momentum_rows(old: torch.Tensor, new: torch.Tensor, momentum: float) -> torch.Tensor:
    """CMC's memory-bank update of the rows of a batch: ``normalise(m * old + (1 - m) * new)``.

    ``old``: (N, D) bank rows, ``new``: (N, D) current embeddings, ``momentum`` m in [0, 1): the weight
    kept on the old row. Returns (N, D) unit rows (float32).
    """
    return F.normalize(momentum * old.float() + (1.0 - momentum) * new.float(), dim=1)


def tanh_clip(x: torch.Tensor, clip: float) -> torch.Tensor:
    """Soft clip to (-clip, clip): ``clip * tanh(x / clip)`` (AMDIM, Bachman et al., NeurIPS 2019).

    Close to the identity for |x| << clip, so small scores pass unchanged while none can exceed
    ``clip`` in magnitude.
    """
    return clip * torch.tanh(x / clip)


def amdim_nce(source: torch.Tensor, target: torch.Tensor, tclip: float = 30.0,
              penalty_weight: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """AMDIM's NCE between a source vector and every location of a target map (docs/PAPER.md §4.4).

    Raw scores ``r_ijl = source_i . target_jl / sqrt(D)`` for source image i, target image j and
    location l are soft-clipped, ``s = tclip * tanh(r / tclip)``. Each location of the same image is a
    positive; the negatives are every location of every *other* image::

        loss    = mean_{i,l}  -log( exp(s_iil) / (exp(s_iil) + sum_{j != i, l'} exp(s_ijl')) )
        penalty = penalty_weight * mean_{i,j,l} r_ijl^2      (on the unclipped scores)

    Args:
        source: (N, D), N >= 2.
        target: (N, D, L), the target map flattened over its L locations.
    Returns ``(loss, penalty)``, two scalars; the caller adds them. The scores go through
    :func:`amdim_nce_scaled`, which :class:`~selfstudy.methods.amdim.AMDIM` calls directly on all its
    terms at once.
    """
    n, d = source.shape
    if target.dim() != 3 or target.shape[:2] != (n, d):
        raise ValueError(f"amdim_nce: target must be (N, D, L) = ({n}, {d}, L), got {tuple(target.shape)}")
    with _fp32(source):
        # z = r / tclip: the 1 / (sqrt(D) tclip) scale is applied to the (N, D) source, not the scores.
        z = source.float().mul(1.0 / (math.sqrt(d) * tclip)) @ target.float().transpose(0, 1).flatten(1)
        loss, mean_sq = amdim_nce_scaled(z.view(1, n, n, -1), tclip)
    return loss[0], penalty_weight * mean_sq[0]


def amdim_nce_scaled(z: torch.Tensor, tclip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`amdim_nce` on ready-made scores, for B independent problems at once.

    ``z``: (B, N, N, L), ``z[b, i, j, l] = r_ijl / tclip`` (the raw score over tclip) of problem b.
    Returns ``(loss, mean_sq)``, both (B,): each problem's NCE loss and its ``mean r^2`` (multiply by
    the penalty weight).

    A fused autograd function: the forward keeps three (B, N, N, L) buffers (z, tanh z and the
    exponentials with the positives zeroed) and does ~7 elementwise passes; the backward reuses them in
    ~4 passes. The plain-op version (clip, square, mask, log-sum-exp and their autograd) made ~25.
    The log-sum-exp shift is each row's largest clipped score, so nothing overflows for any tclip.
    """
    if z.dim() != 4 or z.shape[1] != z.shape[2] or z.shape[1] < 2:
        raise ValueError(f"amdim_nce_scaled: z must be (B, N, N, L) with N >= 2, got {tuple(z.shape)}")
    return _ClippedNCE.apply(z, float(tclip))


class _ClippedNCE(torch.autograd.Function):
    """Forward and backward of :func:`amdim_nce_scaled` (see there)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, tclip: float):
        b, n, _, locs = z.shape
        t = torch.tanh(z)                                              # s = tclip * t
        shift = t.amax(dim=(2, 3), keepdim=True).mul_(tclip)            # (B, N, 1, 1) row max of s
        e = torch.addcmul(shift.neg(), t, t.new_tensor(tclip)).exp_()   # exp(s - shift), (B, N, N, L)
        diag_e = e.diagonal(dim1=1, dim2=2)                             # (B, L, N) view: the positives
        pos_e = diag_e.clone()
        diag_e.zero_()                                                  # e now holds the negatives only
        neg = e.sum(dim=(2, 3))                                         # (B, N)
        denom = pos_e + neg[:, None, :]                                 # (B, L, N)
        pos_s = t.diagonal(dim1=1, dim2=2) * tclip - shift[:, None, :, 0, 0]  # s_iil - shift
        loss = (denom.log() - pos_s).mean(dim=(1, 2))
        mean_sq = torch.linalg.vector_norm(z.flatten(1), dim=1).square() * (tclip * tclip / z[0].numel())
        ctx.save_for_backward(z, t, e, pos_e, denom)
        ctx.tclip = tclip
        return loss, mean_sq

    @staticmethod
    def backward(ctx, g_loss: torch.Tensor, g_sq: torch.Tensor):
        z, t, e, pos_e, denom = ctx.saved_tensors
        tclip = ctx.tclip
        b, n, _, locs = z.shape
        g_loss = g_loss.reshape(b, 1, 1) / (n * locs)
        # d loss / d s_ijl = g * e_ijl * sum_l' 1 / denom_il'  (j != i);  g * (pos_e / denom - 1)  (j = i).
        # ds/dz = tclip * (1 - t^2), the tclip factor folded into these small tensors.
        g_loss = g_loss * tclip
        kappa = (g_loss * denom.reciprocal()).sum(dim=1)                # (B, N)
        grad = e * kappa[:, :, None, None]
        grad.diagonal(dim1=1, dim2=2).copy_(g_loss * (pos_e / denom - 1))
        grad.mul_(torch.addcmul(t.new_ones(()), t, t, value=-1))
        # d mean_sq / dz = 2 tclip^2 z / (N N L).
        grad.addcmul_(z, (g_sq * (2 * tclip * tclip / z[0].numel())).reshape(b, 1, 1, 1))
        return grad, None


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, exp(logvar)) || N(0, I) ) per sample, summed over the latent dimensions.

    ``KL_n = 0.5 * sum_d (mu_nd^2 + exp(logvar_nd) - logvar_nd - 1)`` (Kingma & Welling, ICLR 2014).
    ``mu, logvar``: (N, D). Returns (N,), in nats; zero exactly when mu = 0 and logvar = 0.
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(dim=1)


def vae_loss(recon: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             kl_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The VAE objective with a batch-independent KL weight::

        loss = mean_{n,c,h,w} (recon - target)^2  +  kl_weight * mean_n KL_n

    with ``KL_n`` of :func:`gaussian_kl`. The paper's code summed the KL over the batch as well
    (``MSE + w * sum_n KL_n``), so its weight grew with the batch size B; ``kl_weight = w * B`` gives
    the same objective (docs/PAPER.md §10.1: 1e-5 at batch 512 is 5.12e-3 here).

    ``recon, target``: (N, C, H, W); ``mu, logvar``: (N, D). Returns ``(loss, mse, kl)``, scalars,
    ``kl`` the mean per-sample KL in nats.
    """
    mse = F.mse_loss(recon, target)
    kl = gaussian_kl(mu, logvar).mean()
    return mse + kl_weight * kl, mse, kl


def info_nce(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE (He et al., CVPR 2020; Oord et al. 2018) against a queue of negative keys.

    With unit vectors ``q = normalise(query)``, ``k+ = normalise(key)`` and the queue's rows ``k_j``
    (j = 1..K)::

        loss = mean_i  -log( exp(q_i . k+_i / T) / (exp(q_i . k+_i / T) + sum_j exp(q_i . k_j / T)) )

    i.e. :func:`nce_softmax` on normalised queries and keys with the queue as shared negatives.

    Args:
        query: (N, D), any scale.
        key: (N, D), the positive of each query, any scale.
        queue: (K, D) negatives, used as given (MoCo stores unit keys).
        temperature: T > 0.
    Returns a scalar.
    """
    if query.shape != key.shape or query.dim() != 2 or queue.dim() != 2 or queue.shape[1] != query.shape[1]:
        raise ValueError(f"info_nce needs query and key (N, D) and queue (K, D), got {tuple(query.shape)}, "
                         f"{tuple(key.shape)} and {tuple(queue.shape)}")
    with _fp32(query):
        q, k = F.normalize(query.float(), dim=1), F.normalize(key.float(), dim=1)
    return nce_softmax(q, k, queue, temperature)


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss (Grill et al., NeurIPS 2020): the mean squared distance of unit vectors,

        loss = mean_i || p_i / |p_i| - z_i / |z_i| ||^2 = mean_i ( 2 - 2 cos(p_i, z_i) ),

    in [0, 4]: 0 when each prediction points along its target, 4 when opposite. Symmetric in its two
    arguments; the method adds it for both view orders (the paper's symmetrised loss, in [0, 8]).

    ``prediction, target``: (N, D), any scale (``target`` is normally detached). Returns a scalar.
    """
    if prediction.shape != target.shape or prediction.dim() != 2:
        raise ValueError(f"byol_loss needs two (N, D) tensors of one shape, got {tuple(prediction.shape)} "
                         f"and {tuple(target.shape)}")
    with _fp32(prediction):
        cos = F.cosine_similarity(prediction.float(), target.float(), dim=1, eps=1e-8)
    return (2.0 - 2.0 * cos).mean()


def _pair(name: str, z1: torch.Tensor, z2: torch.Tensor, min_rows: int = 2) -> None:
    if z1.shape != z2.shape or z1.dim() != 2 or z1.shape[0] < min_rows:
        raise ValueError(f"{name} needs two (N, D) tensors of one shape with N >= {min_rows}, got "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}")


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """The (D, D) cross-correlation ``C = z1n^T z2n / N`` of two views' embeddings, each dimension
    standardised over the batch first (``(z - mean) / sqrt(var + eps)``, biased variance, as BatchNorm
    without affine parameters). ``z1, z2``: (N, D), N >= 2; float32 under autocast."""
    _pair("cross_correlation", z1, z2)
    with _fp32(z1):
        a, b = z1.float(), z2.float()
        a = (a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + eps)
        b = (b - b.mean(0)) / torch.sqrt(b.var(0, unbiased=False) + eps)
        return a.t() @ b / a.shape[0]


def barlow_twins_from_correlation(c: torch.Tensor, lambd: float) -> torch.Tensor:
    """``sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2`` of a (D, D) cross-correlation matrix."""
    diag = torch.diagonal(c)
    return (1 - diag).pow(2).sum() + lambd * (c.pow(2).sum() - diag.pow(2).sum())


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float,
                      eps: float = 1e-5) -> torch.Tensor:
    """Barlow Twins' redundancy-reduction loss (Zbontar, Jing, Misra, LeCun & Deny, ICML 2021).

    With ``C`` the :func:`cross_correlation` of the two views' batch-standardised embeddings::

        loss = sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2

    0 when the views' embeddings are identical and their dimensions uncorrelated (C = I). Invariant to
    a per-dimension affine change of either view (with positive scale). ``z1, z2``: (N, D), N >= 2.
    Returns a scalar.
    """
    return barlow_twins_from_correlation(cross_correlation(z1, z2, eps), lambd)


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor, gamma: float = 1.0,
                 eps: float = 1e-4) -> dict[str, torch.Tensor]:
    """The three terms of VICReg (Bardes, Ponce & LeCun, ICLR 2022), unweighted, as scalars:

    * ``invariance``: ``mean over rows and dims of (z1 - z2)^2`` (the reference code's ``mse_loss``);
    * ``variance``: for each view ``mean_j max(0, gamma - sqrt(Var(z^j) + eps))`` (unbiased variance
      over the batch), summed over the two views: a hinge that keeps every dimension's std >= gamma;
    * ``covariance``: for each view ``sum_{i != j} Cov(z)_ij^2 / D`` (Cov with 1 / (N - 1)), summed over
      the two views: decorrelates the dimensions.

    ``z1, z2``: (N, D), N >= 2. See :func:`vicreg_loss` for the weighted sum.
    """
    _pair("vicreg_terms", z1, z2)
    with _fp32(z1):
        a, b = z1.float(), z2.float()
        n, d = a.shape
        inv = F.mse_loss(a, b)
        var = a.new_zeros(())
        cov = a.new_zeros(())
        for z in (a, b):
            z = z - z.mean(0)
            std = torch.sqrt(z.var(0) + eps)
            var = var + F.relu(gamma - std).mean()
            c = z.t() @ z / (n - 1)
            cov = cov + (c.pow(2).sum() - torch.diagonal(c).pow(2).sum()) / d
    return {"invariance": inv, "variance": var, "covariance": cov}


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim_weight: float = 25.0, var_weight: float = 25.0,
                cov_weight: float = 1.0, gamma: float = 1.0) -> torch.Tensor:
    """VICReg's loss: ``sim_weight * invariance + var_weight * variance + cov_weight * covariance``
    (the paper's 25, 25, 1) of :func:`vicreg_terms`. A scalar."""
    t = vicreg_terms(z1, z2, gamma)
    return sim_weight * t["invariance"] + var_weight * t["variance"] + cov_weight * t["covariance"]
