"""The training loop on a toy model: schedule, epochs, resume, NaN guard, log, config checks."""

import json

import pytest
import torch
from torch import nn

from selfstudy.errors import UserError
from selfstudy.train.checkpoint import load_checkpoint
from selfstudy.train.loop import AfterStep, Callback, TrainConfig, Trainer, TrainingDiverged
from selfstudy.train.schedule import warmup_linear


class Toy(nn.Module):
    """A conv + BN + linear classifier of 8x8 images; the forward draws a random flip and noise from
    the batch's generator, like a method's augmentation."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, batch):
        x = batch["images"].permute(0, 3, 1, 2).float() / 255
        g = batch["generator"]
        flip = torch.rand(len(x), generator=g, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        x = x + 0.05 * torch.randn(x.shape, generator=g, device=x.device)
        logits = self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))
        loss = nn.functional.cross_entropy(logits, batch["label"])
        acc = (logits.argmax(1) == batch["label"]).float().mean()
        return {"loss": loss, "acc": acc, "features": logits.detach()}


def toy_data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 3, (n,), generator=g)
    images = torch.randint(0, 60, (n, 8, 8, 3), generator=g, dtype=torch.uint8)
    images[torch.arange(n), :, :, label] += 150  # the class is the brightest channel
    return {"images": images, "label": label}


def make(out_dir=None, callbacks=(), seed=0, identity=None, **cfg):
    torch.manual_seed(seed)
    cfg = TrainConfig(**{"epochs": 3, "batch_size": 16, "lr": 1e-2, "final_lr": 1e-4,
                         "warmup_epochs": 1, "checkpoint_every": 4, "seed": seed, **cfg})
    return Trainer(Toy(), cfg, toy_data(), out_dir=out_dir, callbacks=callbacks, progress=False,
                   identity=identity, sync_every=3)


class StopAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer, step, outputs):
        if step == self.step:
            raise KeyboardInterrupt(f"stopped at {step}")


def test_learns_and_logs_one_record_per_epoch(tmp_path):
    t = make(tmp_path, epochs=6)
    history = t.run()
    assert [r["epoch"] for r in history] == list(range(1, 7))
    assert t.step == 6 * (96 // 16)
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["acc"] > 0.6
    assert "features" not in history[-1]  # only scalars are logged
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(1, 7))
    assert all(r["images_per_s"] > 0 for r in lines)


def test_epochs_are_real_passes_with_drop_last():
    seen = []

    def step_fn(batch):
        seen.append(batch["index"].clone())
        return model(batch)

    torch.manual_seed(0)
    model = Toy()
    data = toy_data(n=100)  # 100 // 16 = 6 batches a pass; 4 samples dropped each pass
    t = Trainer(model, TrainConfig(epochs=2, batch_size=16), data, step_fn, progress=False)
    t.run()
    assert len(seen) == 12
    for epoch in (seen[:6], seen[6:]):
        idx = torch.cat(epoch)
        assert len(idx.unique()) == 96  # no repeats within a pass
    assert not torch.equal(torch.cat(seen[:6]), torch.cat(seen[6:]))  # a new permutation per pass


def test_learning_rate_follows_schedule_per_group():
    lrs = []

    class Record(Callback):
        def on_step_end(self, trainer, step, outputs):
            lrs.append([g["lr"] for g in trainer.optimizer.param_groups])

    torch.manual_seed(0)
    model = Toy()
    groups = [{"params": list(model.conv.parameters()) + list(model.bn.parameters())},
              {"params": model.fc.parameters(), "lr": 0.5, "final_lr": 0.5, "weight_decay": 0.0}]
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.1, final_lr=0.01, warmup_epochs=1,
                      warmup_max_fraction=1.0)
    t = Trainer(model, cfg, toy_data(), param_groups=groups, callbacks=[Record()], progress=False)
    t.run()
    assert t.total_steps == 24 and t.warmup == 6
    for step, (a, b) in enumerate(lrs):
        assert a == warmup_linear(step, 24, 6, 0.1, 0.01)
        assert b == warmup_linear(step, 24, 6, 0.5, 0.5)
    assert lrs[6][0] == 0.1 and lrs[-1][0] == pytest.approx(0.01)


def test_steps_override_and_clamps():
    assert TrainConfig(epochs=2, min_steps=50).total_steps(6) == 50
    assert TrainConfig(epochs=20, max_steps=30).total_steps(6) == 30
    assert TrainConfig(steps=7).total_steps(6) == 7
    assert TrainConfig(epochs=0.5).total_steps(6) == 3
    t = make(steps=8, epochs=None)  # one full pass (6 steps) then a partial one
    history = t.run()
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[1].get("partial") is True and history[1]["step"] == 8


def test_resume_is_bitwise_identical_to_an_uninterrupted_run(tmp_path):
    full = make(tmp_path / "full")
    full.run()

    out = tmp_path / "interrupted"
    # 6 steps a pass, a checkpoint every 4: stopping at 7 leaves the checkpoint of step 4 and a log
    # line for epoch 1 (step 6) that the checkpoint does not know of
    with pytest.raises(KeyboardInterrupt):
        make(out, callbacks=[StopAt(7)]).run()
    assert load_checkpoint(out / "last.pt")["position"]["step"] == 4
    assert len((out / "log.jsonl").read_text().splitlines()) == 1
    with pytest.raises(KeyboardInterrupt):
        make(out, callbacks=[StopAt(10)]).run()  # resumes mid-epoch 1; stops mid-epoch 2 (ckpt 8)
    assert load_checkpoint(out / "last.pt")["position"]["step"] == 8
    resumed = make(out)
    resumed.run()

    a, b = full.module.state_dict(), resumed.module.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    oa, ob = full.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for k in oa:
        assert torch.equal(oa[k]["exp_avg"], ob[k]["exp_avg"])
    assert torch.equal(full.step_gen.get_state(), resumed.step_gen.get_state())
    # log: one line per epoch, no epoch repeated by the resumes, same losses as the full run
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert [r["loss"] for r in lines] == pytest.approx([r["loss"] for r in full.history], rel=1e-6)


def test_rerunning_a_finished_run_changes_nothing(tmp_path):
    t = make(tmp_path)
    t.run()
    before = {k: v.clone() for k, v in t.module.state_dict().items()}
    again = make(tmp_path)
    assert again.run() == t.history
    assert again.step == t.total_steps
    for k, v in again.module.state_dict().items():
        assert torch.equal(v, before[k])
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 3


def test_nan_loss_stops_naming_the_step_and_keeps_last_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = Toy()
    calls = {"n": 0}

    def step_fn(batch):
        calls["n"] += 1
        out = model(batch)
        if calls["n"] == 7:
            out["loss"] = out["loss"] * float("nan")
        return out

    cfg = TrainConfig(epochs=3, batch_size=16, checkpoint_every=3)
    t = Trainer(model, cfg, toy_data(), step_fn, out_dir=tmp_path, progress=False, sync_every=5)
    with pytest.raises(TrainingDiverged, match=r"nan at step 7 of 18") as e:
        t.run()
    assert isinstance(e.value, UserError)
    assert "last.pt (step 6)" in str(e.value)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["position"]["step"] == 6
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_checkpoint_of_another_run_is_refused(tmp_path):
    make(tmp_path, identity={"backbone": "resnet9", "method": "rotation"}, steps=2, epochs=None).run()
    with pytest.raises(UserError, match=r"backbone: 'resnet9' there, 'resnet18' here"):
        make(tmp_path, identity={"backbone": "resnet18", "method": "rotation"}, steps=2, epochs=None).run()
    with pytest.raises(UserError, match=r"train\.lr: 0\.01 there, 0\.02 here"):
        make(tmp_path, identity={"backbone": "resnet9", "method": "rotation"}, steps=2, epochs=None,
             lr=0.02).run()
    # a file that is not a checkpoint at all
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable"):
        make(tmp_path, steps=2, epochs=None).run()


def test_eval_fn_and_extra_state(tmp_path):
    class Counter:
        def __init__(self):
            self.n = 0

        def state_dict(self):
            return {"n": self.n}

        def load_state_dict(self, d):
            self.n = d["n"]

    counter = Counter()

    def eval_fn(module):
        assert not module.training and not torch.is_grad_enabled()
        counter.n += 1
        return {"val/score": torch.tensor(0.5)}

    torch.manual_seed(0)
    t = Trainer(Toy(), TrainConfig(epochs=4, batch_size=16), toy_data(), out_dir=tmp_path, eval_fn=eval_fn,
                eval_every=3, extra_state={"counter": counter}, progress=False)
    history = t.run()
    assert ["val/score" in r for r in history] == [False, False, True, True]  # every 3rd and the last
    assert load_checkpoint(tmp_path / "last.pt")["extra"] == {"counter": {"n": 2}}


def test_bf16_autocast_on_cpu_runs():
    t = make(steps=3, epochs=None, precision="bf16", channels_last=True)
    history = t.run()
    assert torch.isfinite(torch.tensor(history[-1]["loss"]))


@pytest.mark.parametrize("kw, message", [
    ({"epochs": 2, "steps": 5}, "exactly one of epochs"),
    ({"epochs": None}, "exactly one of epochs"),
    ({"optimizer": "lamb"}, "allowed: adam, adamw, sgd"),
    ({"precision": "fp8"}, "allowed: fp32, bf16, fp16"),
    ({"betas": (0.9,)}, "betas"),
    ({"lr": -1.0}, "lr=-1.0"),
    ({"batch_size": 0}, "batch_size"),
])
def test_config_validation(kw, message):
    with pytest.raises(UserError, match=message):
        TrainConfig(**{"epochs": 1, **kw}).validate()


def test_bad_setups_raise_user_error(monkeypatch):
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        make(precision="fp16")
    with pytest.raises(UserError, match="larger than the 96"):
        make(batch_size=128)
    monkeypatch.setenv("SELFSTUDY_THREADS", "two")
    with pytest.raises(UserError, match="SELFSTUDY_THREADS"):
        make()


def test_after_step_runs_after_each_optimizer_step_before_the_checkpoint(tmp_path):
    calls, seen_in_checkpoint = [], {}

    class Watch(Callback):
        def on_step_end(self, trainer, step, outputs):
            if step == 4:  # checkpoint_every=4: last.pt was just written
                state = load_checkpoint(tmp_path / "last.pt")["model"]
                seen_in_checkpoint["marker"] = state["marker"].item()

    torch.manual_seed(0)
    cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-2, warmup_epochs=0, checkpoint_every=4)
    model = Toy()
    model.register_buffer("marker", torch.zeros(()))
    weights = []

    def hook(step, total):
        calls.append((step, total))
        weights.append(model.fc.weight.detach().clone())
        model.marker += 1  # state the hook changes, as an EMA target would

    trainer = Trainer(model, cfg, toy_data(), out_dir=tmp_path, callbacks=[AfterStep(hook), Watch()],
                      progress=False)
    trainer.run()
    assert calls == [(s, 6) for s in range(1, 7)]  # 96 images / 16 per step
    assert not torch.equal(weights[0], weights[1])  # called after the optimizer moved the weights
    assert seen_in_checkpoint["marker"] == 4.0      # the step-4 checkpoint holds the hook's effect


def test_the_trainer_keeps_freed_memory_on_a_cpu(monkeypatch):
    import selfstudy.train.loop as loop

    calls = []
    monkeypatch.setattr(loop, "retain_freed_memory", lambda: calls.append(1) or True)
    make()
    assert calls == [1]


# --- one hook mechanism, stopping as a flag ----------------------------------------------------------


class Events(Callback):
    """Records every hook call; asks the trainer to stop after step ``at`` (with an annealing tail)."""

    def __init__(self, at=None, anneal=0):
        self.at, self.anneal, self.calls, self.lrs = at, anneal, [], []

    def after_optimizer_step(self, trainer, step):
        self.calls.append(("after_optimizer_step", step))
        self.lrs.append(trainer.lr)  # the rate the step just taken used

    def on_step_end(self, trainer, step, outputs):
        self.calls.append(("on_step_end", step))
        if step == self.at:
            trainer.stop(self.anneal)

    def on_epoch_end(self, trainer, record):
        self.calls.append(("on_epoch_end", record["step"]))

    def on_train_end(self, trainer):
        self.calls.append(("on_train_end", trainer.step))


def test_callbacks_must_subclass_callback():
    class Duck:
        def on_step_end(self, trainer, step, outputs):
            pass

    with pytest.raises(TypeError, match="Callback"):
        make(callbacks=[Duck()])


def test_hooks_run_in_order_for_every_step():
    ev = Events()
    t = make(callbacks=[ev], epochs=1)  # 6 steps
    t.run()
    per_step = [c for c in ev.calls if c[0] in ("after_optimizer_step", "on_step_end")]
    assert per_step == [(name, s) for s in range(1, 7) for name in ("after_optimizer_step", "on_step_end")]
    assert ev.calls[-1] == ("on_train_end", 6) and ("on_epoch_end", 6) in ev.calls


def test_a_stopped_run_still_saves_ends_and_meets_the_barrier(tmp_path, monkeypatch):
    import selfstudy.train.loop as loop

    barriers = []
    monkeypatch.setattr(loop.distributed, "barrier", lambda: barriers.append(1))
    ev = Events(at=8)  # mid-way through the second epoch (6 steps an epoch)
    t = make(tmp_path, callbacks=[ev], checkpoint_every=0)
    history = t.run()
    assert t.step == 8 and t.end_step == 8 and t.stopped_early and t.total_steps == 18
    assert ev.calls[-1] == ("on_train_end", 8) and barriers == [1]
    assert [r["step"] for r in history] == [6, 8] and history[-1]["partial"] is True
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["position"]["step"] == 8 and saved["position"]["end_step"] == 8
    # A rerun finds the run finished: it trains no further and keeps the weights.
    again = make(tmp_path, callbacks=[Events()], checkpoint_every=0)
    again.run()
    assert again.step == 8 and again.stopped_early
    for a, b in zip(t.module.state_dict().values(), again.module.state_dict().values()):
        assert torch.equal(a, b)


def test_stop_with_a_tail_anneals_linearly_to_the_final_rate():
    ev = Events(at=7, anneal=4)
    t = make(callbacks=[ev], lr=1e-2, final_lr=1e-4)  # 18 planned steps
    t.run()
    assert t.step == 11 and t.stopped_early
    used = ev.lrs  # the rate of each step taken: steps 1-7 on the plan, 8-11 the tail
    planned = [warmup_linear(k, 18, t.warmup, 1e-2, 1e-4) for k in range(7)]
    assert used[:7] == planned
    start = used[6]
    assert used[7:] == pytest.approx([start + (1e-4 - start) * j / 4 for j in (1, 2, 3, 4)])
    assert t.lr == pytest.approx(1e-4)  # ended annealed


def test_stop_after_the_plan_would_end_changes_nothing():
    ev = Events(at=15, anneal=10)  # the plan ends at 18, sooner than the tail would
    t = make(callbacks=[ev])
    t.run()
    assert t.step == 18 and not t.stopped_early
    assert ev.lrs == [warmup_linear(k, 18, t.warmup, 1e-2, 1e-4) for k in range(18)]
