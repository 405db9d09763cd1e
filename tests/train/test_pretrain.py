"""The pretraining driver on tiny datasets (synthetic shapes, and rendered TCVL for every method), plus one
slow real-effect test."""

import json
import math

import numpy as np
import pytest
import torch

from selfstudy.data.store import DatasetWriter
from selfstudy.errors import UserError
from selfstudy.methods import METHODS, build_encoder, build_method
from selfstudy.train.checkpoint import load_checkpoint, save_checkpoint
from selfstudy.train.pretrain import PretrainModule, load_transfer, pretrain, split_overrides


def make_dataset(path, n=96, res=16, seed=0):
    """Coloured shapes on a grey background: class 0 a square, 1 a disk, 2 a horizontal bar, 3 a
    vertical bar, in random colours and places; 2/3 train, 1/6 val, 1/6 test."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:res, :res]
    images = np.full((n, res, res, 3), 90, np.uint8)
    label = rng.integers(0, 4, n)
    for i in range(n):
        cy, cx = rng.integers(res // 4, 3 * res // 4, 2)
        r = res // 5
        mask = [(abs(yy - cy) <= r) & (abs(xx - cx) <= r), (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r,
                (abs(yy - cy) <= r // 3) & (abs(xx - cx) <= 2 * r),
                (abs(xx - cx) <= r // 3) & (abs(yy - cy) <= 2 * r)][label[i]]
        images[i][mask] = rng.integers(0, 256, 3)
    split = np.zeros(n, np.uint8)
    split[n * 2 // 3:] = 1
    split[n * 5 // 6:] = 2
    schema = {"images": ((res, res, 3), np.uint8), "label": ((), np.int64), "split": ((), np.uint8)}
    with DatasetWriter(path, {"kind": "test-shapes", "n": n, "res": res, "seed": seed}, schema, n) as w:
        w.write(0, {"images": images, "label": label, "split": split})
    return path


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "shapes")


def run_rotation(data, out, **kw):
    args = dict(epochs=2, out=out, overrides=["batch_size=16", "checkpoint_every=3"], progress=False)
    args.update(kw)
    return pretrain(data, "rotation", "resnet9-tiny", **args)


def test_pretrain_writes_a_transferable_checkpoint_and_resumes(shapes, tmp_path):
    out = tmp_path / "run"
    final = run_rotation(shapes, out)
    assert final == out / "final.pt"
    state = load_checkpoint(final)
    assert state["method_config"]["batch_size"] == 16 and state["train_config"]["epochs"] == 2
    assert state["dataset"]["config"]["kind"] == "test-shapes"
    transfer = load_transfer(out)  # a run folder works too
    assert transfer["method"] == "rotation" and transfer["backbone"] == "resnet9-tiny"
    assert transfer["input"]["space"] == "rgb"
    encoder = build_encoder(transfer)
    assert encoder(torch.rand(2, 3, 16, 16)).pooled.shape == (2, 64)

    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]  # 64 train images / 16 = 4 steps a pass
    assert records[-1]["step"] == 8
    for key in ("loss", "ssl_loss", "probe_loss", "probe_accuracy", "accuracy", "images_per_s", "lr"):
        assert key in records[-1]
    assert state["history"] == records

    # rerunning the finished command changes nothing
    before = transfer["state_dict"]
    run_rotation(shapes, out)
    after = load_transfer(final)["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert len((out / "log.jsonl").read_text().splitlines()) == 2


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """120 rendered 32 px TCVL images (the real renderer; ~100 for training)."""
    from selfstudy.data.generate import DatasetConfig, ensure_dataset

    return ensure_dataset(DatasetConfig("TCVL", n=120, res=32), root=tmp_path_factory.mktemp("tcvl"),
                          progress=False)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_pretrains_on_rendered_images(rendered, tmp_path, method):
    """Every registered method through the whole driver on real rendered data: finite losses logged each
    pass, the online probe, a checkpoint whose encoder rebuilds and encodes."""
    final = pretrain(rendered, method, "resnet9-tiny", epochs=2, out=tmp_path / method, seed=0,
                     overrides=["batch_size=32", "warmup_epochs=0"], progress=False)
    records = [json.loads(line) for line in (tmp_path / method / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert math.isfinite(r["loss"]) and math.isfinite(r["ssl_loss"]) and 0 <= r["probe_accuracy"] <= 1
    transfer = load_transfer(final)
    assert transfer["method"] == method
    encoder = build_encoder(transfer).eval()
    with torch.no_grad():
        out = encoder(torch.rand(2, 3, 32, 32)).pooled
    assert out.shape == (2, transfer["out_dim"]) and torch.isfinite(out).all()


def test_checkpoint_of_another_method_or_backbone_is_refused(shapes, tmp_path):
    out = tmp_path / "run"
    pretrain(shapes, "rotation", "resnet9-tiny", out=out, overrides=["steps=1", "batch_size=16"],
             progress=False)
    with pytest.raises(UserError, match="method: 'rotation' there, 'simclr' here"):
        pretrain(shapes, "simclr", "resnet9-tiny", out=out, overrides=["steps=1", "batch_size=16"],
                 progress=False)
    (out / "last.pt").unlink()  # only final.pt left: still checked
    with pytest.raises(UserError, match="backbone: 'resnet9-tiny' there, 'resnet18-tiny' here"):
        pretrain(shapes, "rotation", "resnet18-tiny", out=out, overrides=["steps=1", "batch_size=16"],
                 progress=False)


def test_overrides_are_routed_and_checked():
    m, t = split_overrides(METHODS["simclr"], {"temperature": "0.1", "lr": "1e-3", "steps": "5",
                                              "grad_clip": "1.0", "betas": "0.9,0.99", "max_steps": "none"})
    assert m == {"temperature": "0.1", "lr": "1e-3", "betas": "0.9,0.99"}
    assert t == {"steps": 5, "grad_clip": 1.0, "max_steps": None}
    # CMC's own "momentum" (the memory bank's) goes to the method
    assert split_overrides(METHODS["cmc"], {"momentum": "0.5"}) == ({"momentum": "0.5"}, {})
    with pytest.raises(UserError, match=r"unknown option\(s\) temprature for simclr; allowed: .*temperature"):
        split_overrides(METHODS["simclr"], {"temprature": "0.1"})
    with pytest.raises(UserError, match="train config: steps='many' is not allowed; steps must be an integer > 0 or empty"):
        split_overrides(METHODS["rotation"], {"steps": "many"})


@pytest.mark.parametrize("kw, message", [
    ({"method": "jigsaw"}, "unknown method 'jigsaw'; allowed: rotation"),
    ({"backbone": "vgg"}, "unknown backbone 'vgg'; allowed: resnet9"),
    ({"res": 12}, "cannot take 12 px input; allowed: a multiple of 8"),
    ({"res": 32}, "is 16 px but res=32"),
    ({"data": "TCXL"}, "neither a dataset folder nor a factor string"),
    ({"overrides": ["lr"]}, "bad override 'lr'; write key=value"),
    ({"overrides": ["bogus=1"]}, "unknown option"),
    ({"overrides": ["lr=-1"]}, "lr must be a number > 0"),
    ({"precision": "fp16"}, "fp16 needs a CUDA device"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
])
def test_bad_input_raises_user_error_before_writing(shapes, tmp_path, kw, message):
    args = {"data": shapes, "method": "rotation", "backbone": "resnet9-tiny", "out": tmp_path / "run",
            "overrides": ["steps=1", "batch_size=16"], "progress": False, **kw}
    with pytest.raises(UserError, match=message):
        pretrain(args.pop("data"), args.pop("method"), args.pop("backbone"), **args)
    assert not (tmp_path / "run" / "final.pt").exists()


def test_probe_does_not_change_the_backbone_gradient():
    torch.manual_seed(0)
    method = build_method("rotation", "resnet9-tiny", {"batch_size": 8})
    module = PretrainModule(method, num_classes=4)
    images = torch.randint(0, 256, (8, 16, 16, 3), dtype=torch.uint8)
    batch = {"images": images, "label": torch.arange(8) % 4, "index": torch.arange(8)}

    def backbone_grads(with_probe):
        module.zero_grad()
        b = {**batch, "generator": torch.Generator().manual_seed(1)}
        if not with_probe:
            b.pop("label")  # no labels: the probe is skipped
        out = module(b)
        out["loss"].backward()
        assert ("probe_accuracy" in out) == with_probe
        assert (module.probe[-1].weight.grad is not None) == with_probe
        return [p.grad.clone() for p in method.parameters()]

    a, b = backbone_grads(True), backbone_grads(False)
    assert all(torch.allclose(x, y, atol=1e-7) for x, y in zip(a, b))


def test_load_transfer_rejects_other_files(tmp_path):
    save_checkpoint(tmp_path / "other.pt", {"model": {"w": torch.zeros(1)}})
    with pytest.raises(UserError, match="not a selfstudy pretraining checkpoint"):
        load_transfer(tmp_path / "other.pt")
    (tmp_path / "bad.pt").write_text("hello")
    with pytest.raises(UserError, match="not a readable"):
        load_transfer(tmp_path / "bad.pt")
    with pytest.raises(UserError, match="holds no final.pt"):
        load_transfer(tmp_path)


def linear_probe_accuracy(encoder, transform, train, test):
    """Test accuracy of a logistic regression on frozen, standardised pooled features (L-BFGS)."""
    from selfstudy.data.device import to_float

    encoder.eval()
    with torch.no_grad():
        f_train, f_test = (torch.cat([encoder(transform(to_float(x[i:i + 512]))).pooled
                                      for i in range(0, len(x), 512)]).float()
                           for x in (train["images"], test["images"]))
    mean, std = f_train.mean(0), f_train.std(0) + 1e-6
    f_train, f_test = (f_train - mean) / std, (f_test - mean) / std
    torch.manual_seed(0)
    head = torch.nn.Linear(f_train.shape[1], 10)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(f_train), train["label"])
        loss = loss + 1e-3 * head.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (head(f_test).argmax(1) == test["label"]).float().mean().item()


@pytest.mark.slow
@pytest.mark.long
def test_simclr_pretraining_beats_random_init_in_a_linear_probe(tmp_path_factory):
    """The real effect, on TCVL (all four factors varied: textured objects on textured backgrounds).

    8,000 rendered 32 px images (6,660 for training), 16 passes of SimCLR at batch 128 and a peak
    learning rate of 4e-3 (~75 s of a 2-core CPU in bf16): a linear probe on the frozen pooled features
    reaches 30.7 % test accuracy against 20.1 % for the same backbone at random initialisation
    (measured; chance is 10 %). What was tried at this scale, all measured the same way: SimCLR at the
    default lr 1e-3 and batch 256 gained 6 points in 12 passes; Rotation gained 4-5 points in 12-30
    passes; MoCo 1 point in 12. On -CV- (no texture) SimCLR gains ~18 points in 20 passes.
    """
    from selfstudy.data.colour import InputTransform
    from selfstudy.data.device import load_split
    from selfstudy.data.generate import DatasetConfig, ensure_dataset
    from selfstudy.data.store import Dataset

    root = tmp_path_factory.mktemp("rendered")
    path = ensure_dataset(DatasetConfig("TCVL", n=8000, res=32), root=root, progress=False)
    final = pretrain(path, "simclr", "resnet9-tiny", epochs=16, out=root / "simclr", seed=0,
                     overrides=["batch_size=128", "lr=4e-3", "warmup_epochs=2"], precision="bf16",
                     channels_last=True, progress=False)
    log = [json.loads(line) for line in (root / "simclr" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"]

    ds = Dataset(path)
    train, test = load_split(ds, "train"), load_split(ds, "test")
    assert len(test["label"]) >= 600
    transfer = load_transfer(final)
    transform = InputTransform.from_state(transfer["input"])
    torch.manual_seed(0)
    random_acc = linear_probe_accuracy(build_encoder(transfer, load=False), transform, train, test)
    pretrained_acc = linear_probe_accuracy(build_encoder(transfer), transform, train, test)
    print(f"linear probe test accuracy: random init {random_acc:.3f}, SimCLR {pretrained_acc:.3f}, "
          f"online probe {log[-1]['probe_accuracy']:.3f}")
    # Measured +10.6 points; the standard error of the difference on ~670 test images is ~2.3 points.
    assert pretrained_acc > random_acc + 0.06


def test_a_factor_string_makes_the_dataset_once(tmp_path, monkeypatch):
    """A factor string goes through ensure_dataset (stubbed here: no renderer in unit tests)."""
    import selfstudy.data.generate as generate

    asked = []

    def fake_ensure(cfg, root=None, workers=None, progress=True):
        asked.append(cfg)
        path = tmp_path / "datasets" / cfg.default_name()
        return path if path.exists() else make_dataset(path, n=cfg.n, res=cfg.res)

    monkeypatch.setattr(generate, "ensure_dataset", fake_ensure)
    args = dict(res=32, num_images=96, overrides=["steps=1", "batch_size=16"], progress=False)
    final = pretrain("-CV-", "rotation", "resnet9-tiny", out=tmp_path / "a", **args)
    pretrain("0110", "rotation", "resnet9-tiny", out=tmp_path / "b", **args)  # the same dataset
    assert [(c.factors, c.res, c.n) for c in asked] == [("0110", 32, 96)] * 2
    assert len(list((tmp_path / "datasets").iterdir())) == 1
    assert load_checkpoint(final)["dataset"]["config"]["res"] == 32
