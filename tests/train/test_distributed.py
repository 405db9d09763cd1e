"""Two CPU processes (gloo) pretrain Rotation with DistributedDataParallel and end with equal weights."""

import json
import os
import socket

import torch
import torch.multiprocessing as mp

from selfstudy.core import distributed
from selfstudy.train.checkpoint import load_checkpoint
from selfstudy.train.loop import Callback
from selfstudy.train.pretrain import pretrain

from test_pretrain import make_dataset  # noqa: E402  (tests/train is on sys.path under pytest)


class SaveOwnWeights(Callback):
    """Each rank writes its own final model state, to compare across ranks."""

    def __init__(self, folder):
        self.folder = folder

    def on_train_end(self, trainer):
        rank = distributed.current().rank
        torch.save({"model": trainer.module.state_dict(), "step": trainer.step,
                    "optimizer": trainer.optimizer.state_dict()["state"]},
                   os.path.join(self.folder, f"rank{rank}.pt"))


def _worker(rank, world, port, data, out, states, method="rotation",
            overrides=("steps=5", "batch_size=16", "checkpoint_every=2")):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        pretrain(data, method, "resnet9-tiny", out=out, overrides=list(overrides), progress=False,
                 callbacks=[SaveOwnWeights(states)])
    finally:
        distributed.cleanup()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_ranks(tmp_path, method, overrides):
    data = make_dataset(tmp_path / "shapes", n=96, res=16)  # 64 training images
    out, states = tmp_path / "run", tmp_path / "states"
    states.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(data), str(out), str(states), method, overrides),
             nprocs=2, join=True)
    a, b = (torch.load(states / f"rank{r}.pt", weights_only=True)["model"] for r in (0, 1))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    return a


def test_all_gather_rows_is_the_identity_in_one_process():
    t = torch.arange(6.0).view(3, 2)
    assert distributed.all_gather_rows(t) is t


def test_cmc_banks_get_every_ranks_rows(tmp_path):
    # One pass of 4 global batches of 16 (8 per rank) visits all 64 images: every bank row must have
    # moved. (Broadcasting rank 0's buffers each forward would keep only rank 0's 32 rows.)
    model = _two_ranks(tmp_path, "cmc", ("steps=4", "batch_size=16", "nce_k=16"))
    from selfstudy.methods import build_method

    fresh = build_method("cmc", "resnet9-tiny", {"nce_k": 16}, num_train=64).state_dict()
    for bank in ("method.bank_l", "method.bank_ab"):
        moved = (model[bank] - fresh[bank.removeprefix("method.")]).abs().amax(dim=1) > 1e-6
        assert moved.sum().item() == 64, bank
        assert torch.allclose(model[bank].norm(dim=1), torch.ones(64), atol=1e-5)  # unit rows


def test_moco_queue_gets_every_ranks_keys(tmp_path):
    # One global batch of 16 (8 per rank) pushes 16 keys into the queue of 32 (half the 64 images).
    model = _two_ranks(tmp_path, "moco", ("steps=1", "batch_size=16", "queue_size=64"))
    from selfstudy.methods import build_method

    fresh = build_method("moco", "resnet9-tiny", {"queue_size": 64}, num_train=64).state_dict()
    keys, ptr = model["method.queue.keys"], model["method.queue.ptr"]
    assert keys.shape == (32, 128) and ptr.item() == 16
    moved = (keys - fresh["queue.keys"]).abs().amax(dim=1) > 1e-6
    assert moved.tolist() == [True] * 16 + [False] * 16


def test_shard_splits_a_global_batch():
    idx = torch.arange(8)
    assert distributed.shard(idx, 0, 2).tolist() == [0, 1, 2, 3]
    assert distributed.shard(idx, 1, 2).tolist() == [4, 5, 6, 7]
    assert distributed.current().world == 1 and not distributed.launched_by_torchrun()


def test_two_ranks_end_with_identical_weights(tmp_path):
    data = make_dataset(tmp_path / "shapes", n=96, res=16)
    out, states = tmp_path / "run", tmp_path / "states"
    states.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(data), str(out), str(states)), nprocs=2, join=True)

    a, b = (torch.load(states / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert a["step"] == b["step"] == 5
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["optimizer"]:
        assert torch.equal(a["optimizer"][k]["exp_avg"], b["optimizer"][k]["exp_avg"])
    # rank 0 wrote the files; they describe a 2-process run of 5 global steps
    final = load_checkpoint(out / "final.pt")
    assert final["identity"]["method"] == "rotation"
    last = load_checkpoint(out / "last.pt")
    assert last["identity"]["world"] == 2 and last["position"]["step"] == 5 and len(last["rng"]) == 2
    for k, v in last["model"].items():
        assert torch.equal(v, a["model"][k]), k
    # 64 train images / 16 = 4 steps a pass: one full epoch and a partial one
    assert [json.loads(x)["epoch"] for x in (out / "log.jsonl").read_text().splitlines()] == [1, 2]
    # each rank drew different augmentations (own step generator), from one shared permutation
    assert not torch.equal(last["rng"][0]["generators"]["step"], last["rng"][1]["generators"]["step"])
