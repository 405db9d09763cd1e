import random

import pytest
import torch

from selfstudy.errors import UserError
from selfstudy.train.checkpoint import (capture_rng, check_compatible, describe_mismatch, load_checkpoint,
                                        restore_rng, save_checkpoint)


def test_save_is_atomic_and_loads_back(tmp_path):
    path = tmp_path / "sub" / "last.pt"
    state = {"model": {"w": torch.arange(4.0)}, "step": 3, "betas": (0.8, 0.999), "name": "x", "none": None}
    save_checkpoint(path, state)
    save_checkpoint(path, {**state, "step": 4})  # overwrite in place
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary files left
    back = load_checkpoint(path)
    assert back["step"] == 4 and back["betas"] == (0.8, 0.999)
    assert torch.equal(back["model"]["w"], torch.arange(4.0))


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_checkpoint(path, {"step": 2, "bad": Unpicklable()})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_bad_files_raise_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.pt")
    # a pickled object is refused by weights_only loading
    torch.save({"obj": random.Random(0)}, tmp_path / "obj.pt")
    with pytest.raises(UserError, match="not a readable"):
        load_checkpoint(tmp_path / "obj.pt")
    torch.save(torch.zeros(2), tmp_path / "tensor.pt")
    with pytest.raises(UserError, match="not a dict"):
        load_checkpoint(tmp_path / "tensor.pt")


def test_rng_round_trip_through_a_file(tmp_path):
    g = torch.Generator().manual_seed(5)
    state = capture_rng({"step": g})
    save_checkpoint(tmp_path / "rng.pt", {"rng": state})
    expected = (torch.rand(3, generator=g), torch.rand(3), random.random())
    torch.rand(10, generator=g), torch.rand(10), random.random()  # move everything on
    restore_rng(load_checkpoint(tmp_path / "rng.pt")["rng"], {"step": g})
    got = (torch.rand(3, generator=g), torch.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1]) and got[2] == expected[2]
    with pytest.raises(UserError, match="probe"):
        restore_rng(state, {"step": g, "probe": torch.Generator()})


def test_mismatch_names_every_difference():
    saved = {"backbone": "resnet9", "train": {"lr": 1e-3, "betas": (0.8, 0.999)}, "seed": 0}
    same = {"backbone": "resnet9", "train": {"lr": 1e-3, "betas": [0.8, 0.999]}, "seed": 0}
    assert describe_mismatch(saved, same) == []
    other = {"backbone": "resnet18", "train": {"lr": 1e-2, "betas": [0.8, 0.999]}}
    diffs = describe_mismatch(saved, other)
    assert diffs == ["backbone: 'resnet9' there, 'resnet18' here", "seed: 0 there, '<absent>' here",
                     "train.lr: 0.001 there, 0.01 here"]
    with pytest.raises(UserError, match=r"ckpt\.pt belongs to a different run \(backbone: 'resnet9' there"):
        check_compatible("ckpt.pt", saved, other)
