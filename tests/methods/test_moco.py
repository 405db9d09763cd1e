"""MoCo v2: the momentum update, the key queue, the loss's wiring, training, state."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfstudy.errors import UserError
from selfstudy.methods import build_encoder, build_method, method_config
from selfstudy.methods.losses import info_nce
from selfstudy.methods.moco import KeyQueue, momentum_update_, queue_length

from method_testing import make_batch, structured_images, train_steps


def moco(num_train=0, **overrides):
    return build_method("moco", "resnet9-tiny", {"queue_size": 16, **overrides}, num_train=num_train)


def trainable(m):
    return [p for p in m.parameters() if p.requires_grad]


def test_defaults():
    cfg = method_config("moco", "resnet9")
    assert (cfg.momentum, cfg.queue_size, cfg.temperature, cfg.proj_dim, cfg.symmetric) == \
        (0.99, 4096, 0.2, 128, True)
    assert (cfg.lr, cfg.weight_decay, cfg.batch_size) == (1e-3, 1e-6, 256)


@pytest.mark.parametrize("overrides", [{"momentum": 1.0}, {"momentum": -0.1}, {"temperature": 0},
                                       {"queue_size": 0}, {"proj_dim": 0}])
def test_bad_config(overrides):
    with pytest.raises(UserError, match="moco: .* must be"):
        build_method("moco", "resnet9-tiny", overrides)


# ------------------------------------------------------------------------------- momentum update

def test_momentum_update_exact():
    target, online = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        target.weight.copy_(torch.tensor([[1.0, -2.0]]))
        target.bias.fill_(4.0)
        online.weight.copy_(torch.tensor([[3.0, 6.0]]))
        online.bias.fill_(0.0)
    momentum_update_(target, online, 0.5)
    assert torch.equal(target.weight, torch.tensor([[2.0, 2.0]]))
    assert torch.equal(target.bias, torch.tensor([2.0]))
    assert torch.equal(online.weight, torch.tensor([[3.0, 6.0]]))  # the online side is untouched
    momentum_update_(target, online, 0.0)                           # 0 copies the online weights
    assert torch.equal(target.weight, online.weight) and torch.equal(target.bias, online.bias)


def test_momentum_update_rejects_different_networks():
    with pytest.raises(ValueError, match="differ"):
        momentum_update_(nn.Linear(2, 1), nn.Linear(3, 1), 0.5)


# ------------------------------------------------------------------------------------------- queue

def test_queue_fifo_and_wrap_around():
    q = KeyQueue(5, 2)
    assert torch.allclose(q.keys.norm(dim=1), torch.ones(5))            # random unit rows to start
    assert torch.equal(q.keys, KeyQueue(5, 2).keys) and not torch.equal(q.keys, KeyQueue(5, 2, seed=1).keys)
    a = torch.arange(6.0).view(3, 2)                                     # rows (0,1) (2,3) (4,5)
    q.push(a)
    assert torch.equal(q.keys[:3], a) and int(q.ptr) == 3
    b = torch.arange(100.0, 106.0).view(3, 2)
    q.push(b)                                                            # writes 3, 4, then wraps to 0
    assert torch.equal(q.keys, torch.stack([b[2], a[1], a[2], b[0], b[1]])) and int(q.ptr) == 1


def test_queue_push_longer_than_queue_keeps_the_newest():
    q = KeyQueue(3, 1)
    q.push(torch.zeros(1, 1))                                            # ptr 1
    q.push(torch.arange(1.0, 8.0).view(7, 1))                            # as if written one by one
    # Sequential writes at 1, 2, 0, 1, 2, 0, 1 leave 6 at 0, 7 at 1, 5 at 2; ptr (1 + 7) % 3 = 2.
    assert q.keys.flatten().tolist() == [6.0, 7.0, 5.0] and int(q.ptr) == 2


def test_queue_length_clamped_for_small_datasets():
    assert queue_length(4096, 0) == 4096          # size unknown: as configured
    assert queue_length(4096, 100_000) == 4096
    assert queue_length(4096, 1000) == 500        # at most half the training split
    assert queue_length(4096, 1) == 1
    assert len(moco(num_train=10).queue) == 5 and len(moco().queue) == 16


# --------------------------------------------------------------------------------------- the method

def test_key_encoder_starts_equal_and_is_frozen():
    m = moco()
    assert all(not p.requires_grad for p in m.key_backbone.parameters())
    assert all(not p.requires_grad for p in m.key_projector.parameters())
    ids = {id(p) for p in trainable(m)}
    assert ids == {id(p) for mod in (m.backbone, m.projector) for p in mod.parameters()}
    for a, b in zip(m.key_backbone.parameters(), m.backbone.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    out = m(make_batch(structured_images(8, 16)))
    out["loss"].backward()
    assert all(p.grad is None for p in m.key_backbone.parameters())
    assert all(p.grad is None for p in m.key_projector.parameters())
    assert all(p.grad is not None for p in trainable(m))


def test_loss_wiring_queue_push_and_ema_after_a_step():
    m = moco(momentum=0.7)
    x = structured_images(8, 16)
    train_steps(m, x, steps=1)                    # the query encoder now differs from the key encoder
    captured = {}
    m.projector.register_forward_hook(lambda mod, a, out: captured.__setitem__("q", out.detach()))
    m.key_projector.register_forward_hook(lambda mod, a, out: captured.__setitem__("k", out.detach()))
    key_before = [p.clone() for p in m.key_backbone.parameters()]
    query_now = [p.clone() for p in m.backbone.parameters()]
    queue_before, ptr_before = m.queue.keys.clone(), int(m.queue.ptr)
    out = m(make_batch(x, seed=3))
    # The loss itself never moves the key encoder...
    assert all(torch.equal(k, k0) for k, k0 in zip(m.key_backbone.parameters(), key_before))
    # ...the hook after an optimizer step does, toward the current query weights.
    m.after_step(2, 10)
    for k, k0, q in zip(m.key_backbone.parameters(), key_before, query_now):
        assert torch.allclose(k, 0.7 * k0 + 0.3 * q, atol=1e-7)
    # Symmetric InfoNCE: queries of (v1, v2) against keys of (v2, v1), the pre-step queue as negatives.
    q, k = captured["q"], F.normalize(captured["k"], dim=1)
    assert q.shape == (16, 128) and k.shape == (16, 128)
    assert torch.allclose(out["loss"], info_nce(q, k, queue_before, 0.2), atol=1e-6)
    # The 8 keys of view 2 went in at the pointer, which moved on by 8 (mod 16).
    pos = (ptr_before + torch.arange(8)) % 16
    assert torch.allclose(m.queue.keys[pos], k[:8], atol=1e-7) and int(m.queue.ptr) == (ptr_before + 8) % 16
    assert out["features"].shape == (8, 64) and 0 <= out["key_accuracy"].item() <= 1


def test_asymmetric_loss_uses_one_view_per_encoder():
    m = moco(symmetric=False)
    captured = {}
    m.projector.register_forward_hook(lambda mod, a, out: captured.__setitem__("q", out.detach()))
    out = m(make_batch(structured_images(8, 16)))
    assert captured["q"].shape == (8, 128) and int(m.queue.ptr) == 8 and out["loss"].dim() == 0


def test_eval_mode_moves_neither_keys_nor_queue():
    m = moco()
    train_steps(m, structured_images(8, 16), steps=1)
    m.eval()
    keys, queue = [p.clone() for p in m.key_backbone.parameters()], m.queue.keys.clone()
    m(make_batch(structured_images(8, 16)))
    assert all(torch.equal(a, b) for a, b in zip(m.key_backbone.parameters(), keys))
    assert torch.equal(m.queue.keys, queue)


def test_loss_decreases():
    # Two batches in turn with a queue of one batch: the negatives are always the other batch's keys
    # (on one fixed batch they would be stale keys of the very same images).
    torch.manual_seed(0)
    m = moco(queue_size=8, symmetric=False)
    x = structured_images(16, 16)
    opt = torch.optim.Adam(trainable(m), lr=2e-3)
    losses = []
    for step in range(10):
        b = step % 2
        out = m(make_batch(x[8 * b:8 * b + 8], seed=b))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    # Step 0 contrasts with the random initial queue; compare real-key steps.
    assert sum(losses[-2:]) < 0.8 * sum(losses[1:3])


def test_deterministic_given_seeds_and_uses_the_generator():
    x = structured_images(8, 16)
    losses = []
    for seed in (5, 5, 6):
        torch.manual_seed(3)
        losses.append(moco()(make_batch(x, seed=seed))["loss"])
    assert torch.equal(losses[0], losses[1])
    assert not torch.equal(losses[0], losses[2])


def test_state_dict_resumes_exactly():
    x = structured_images(8, 16)
    a = moco()
    train_steps(a, x, steps=1)
    state = a.state_dict()
    assert {"queue.keys", "queue.ptr"} <= set(state) and any(k.startswith("key_backbone.") for k in state)
    torch.manual_seed(7)                          # a different initialisation, overwritten by the load
    b = moco()
    b.load_state_dict(state)
    out_a, out_b = a(make_batch(x, seed=4)), b(make_batch(x, seed=4))
    assert torch.equal(out_a["loss"], out_b["loss"])
    assert torch.equal(a.queue.keys, b.queue.keys) and torch.equal(a.queue.ptr, b.queue.ptr)


def test_encoder_and_transfer_state():
    m = moco()
    train_steps(m, structured_images(8, 16), steps=1)
    m.eval()
    x = m.input(structured_images(4, 16))
    assert m.encoder() is m.backbone and m.encoder()(x).pooled.shape == (4, 64)
    ts = m.transfer_state()
    assert ts["method"] == "moco" and ts["out_dim"] == 64
    assert not any(k.startswith(("projector", "key_", "queue")) for k in ts["state_dict"])
    fresh = build_encoder(ts).eval()
    assert torch.allclose(fresh(x).pooled, m.encoder()(x).pooled)
