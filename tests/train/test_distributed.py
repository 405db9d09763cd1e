"""Two CPU processes (gloo) pretrain Rotation with DistributedDataParallel and end with equal weights."""

import json
import os
import socket

import torch
import torch.multiprocessing as mp

from selfstudy.train import distributed
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


def _worker(rank, world, port, data, out, states):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        pretrain(data, "rotation", "resnet9-tiny", out=out, overrides=["steps=5", "batch_size=16",
                 "checkpoint_every=2"], progress=False, callbacks=[SaveOwnWeights(states)])
    finally:
        distributed.cleanup()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
