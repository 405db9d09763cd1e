"""The paper's learning-rate schedule (docs/PAPER.md §6.1): linear warm-up, then linear decay.

The original code ran a per-iteration ``LambdaLR`` that rose linearly from 0 to the peak over the first 5
"epochs" and fell linearly to the final rate at the last milestone. Here the schedule is a pure function
of the step, so a resumed run recomputes exactly the rate it would have used.
"""

from __future__ import annotations

from selfstudy.errors import UserError


def warmup_linear(step: int, total: int, warmup: int, peak: float, final: float) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of a run of ``total`` steps.

    * ``step < warmup``: ``peak * step / warmup`` (0 at step 0, the paper's warm-up from zero);
    * ``warmup <= step < total``: linear from ``peak`` at ``step == warmup`` to ``final`` at the last
      step, ``total - 1``. If the warm-up fills the whole run (``warmup >= total - 1``) there is no
      decay: the rate stays at ``peak`` after the warm-up.

    Steps past the end keep the final rate.

    Args:
        step: the optimizer step about to be taken, ``>= 0``.
        total: steps in the run, ``>= 1``.
        warmup: warm-up steps, ``0 <= warmup <= total``.
        peak, final: learning rates (>= 0).
    """
    if total < 1 or warmup < 0 or warmup > total or step < 0:
        raise UserError(f"bad schedule: step={step}, total={total}, warmup={warmup}; need "
                        f"total >= 1, 0 <= warmup <= total, step >= 0")
    if step < warmup:
        return peak * step / warmup
    decay_steps = total - 1 - warmup
    if decay_steps <= 0:
        return peak
    frac = min(1.0, (step - warmup) / decay_steps)
    return peak + (final - peak) * frac


def warmup_steps(warmup_epochs: float, steps_per_epoch: int, total: int, max_fraction: float) -> int:
    """Warm-up length in steps: ``warmup_epochs`` passes, but at most ``max_fraction`` of the run.

    The paper warmed up for 5 of its 200-800 "epochs" (a 50k-sample block each), i.e. 1-3 % of the run.
    On the short runs a CPU affords (a few real passes), 5 passes of warm-up would be most of the run, so
    the warm-up is capped at a fraction of the total: with the default cap of 0.1 the cap only bites for
    runs shorter than 50 passes.
    """
    by_epochs = int(round(warmup_epochs * steps_per_epoch))
    cap = int(max_fraction * total)
    return max(0, min(by_epochs, cap, total))
