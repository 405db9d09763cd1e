import pytest

from selfstudy.errors import UserError
from selfstudy.train.schedule import warmup_linear, warmup_steps


def test_warmup_then_linear_decay_hand_computed():
    # 11 steps, 4 of warm-up, peak 1.0, final 0.3: steps 0..3 rise 0, .25, .5, .75; step 4 is the
    # peak; steps 4..10 fall by 0.7/6 per step to 0.3 at the last step.
    lrs = [warmup_linear(s, total=11, warmup=4, peak=1.0, final=0.3) for s in range(11)]
    assert lrs[0] == 0.0
    assert lrs[1:4] == pytest.approx([0.25, 0.5, 0.75])
    assert lrs[4] == 1.0
    assert lrs[7] == pytest.approx(1.0 - 0.7 * 3 / 6)
    assert lrs[10] == pytest.approx(0.3)
    # past the end: stays final
    assert warmup_linear(50, total=11, warmup=4, peak=1.0, final=0.3) == pytest.approx(0.3)


def test_no_warmup_starts_at_peak_and_single_step_runs():
    assert warmup_linear(0, total=5, warmup=0, peak=2e-3, final=1e-5) == 2e-3
    assert warmup_linear(4, total=5, warmup=0, peak=2e-3, final=1e-5) == pytest.approx(1e-5)
    assert warmup_linear(0, total=1, warmup=0, peak=1e-3, final=0.0) == 1e-3
    # warm-up filling the run: no decay left, the rate stays at the peak after it
    assert warmup_linear(3, total=4, warmup=3, peak=1.0, final=0.0) == 1.0


def test_bad_arguments_raise_user_error():
    with pytest.raises(UserError):
        warmup_linear(0, total=0, warmup=0, peak=1.0, final=0.0)
    with pytest.raises(UserError):
        warmup_linear(0, total=5, warmup=6, peak=1.0, final=0.0)


def test_warmup_length_is_capped_for_short_runs():
    # 100 steps per pass; 5 passes of warm-up in a 100-pass run is not capped ...
    assert warmup_steps(5, 100, total=10_000, max_fraction=0.1) == 500
    # ... but in a 10-pass run it is capped to 10 % of the run
    assert warmup_steps(5, 100, total=1_000, max_fraction=0.1) == 100
    assert warmup_steps(0, 100, total=1_000, max_fraction=0.1) == 0
