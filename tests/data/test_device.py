import numpy as np
import pytest
import torch

from selfstudy.data.device import iterate_batches, load_split, to_float
from selfstudy.data.store import DatasetWriter, open_dataset
from selfstudy.errors import UserError

N = 12


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    rng = np.random.default_rng(0)
    arrays = {
        "images": rng.integers(0, 256, (N, 4, 4, 3), dtype=np.uint8),
        "label": np.arange(N, dtype=np.int64) % 10,
        "depth": rng.random((N, 4, 4)).astype(np.float16),
        "split": np.array([0, 0, 1, 0, 2, 0, 0, 1, 0, 2, 0, 0], dtype=np.uint8),
    }
    schema = {k: (v.shape[1:], v.dtype) for k, v in arrays.items()}
    path = tmp_path_factory.mktemp("ds") / "tiny"
    with DatasetWriter(path, {"name": "tiny"}, schema, N) as w:
        w.write(0, arrays)
    return open_dataset(path)


def test_load_split_keeps_dtypes_and_rows(ds):
    data = load_split(ds, "train", "cpu", names=("images", "label", "depth"))
    rows = ds.indices("train")
    assert data["images"].dtype == torch.uint8 and data["images"].shape == (len(rows), 4, 4, 3)
    assert np.array_equal(data["images"].numpy(), ds["images"][rows])
    assert np.array_equal(data["label"].numpy(), ds["label"][rows])
    assert data["depth"].dtype == torch.float16
    assert data["index"].tolist() == rows.tolist()


def test_load_split_indices_select_within_the_split(ds):
    data = load_split(ds, "train", indices=[0, 2])
    rows = ds.indices("train")[[0, 2]]
    assert data["index"].tolist() == rows.tolist()
    assert np.array_equal(data["label"].numpy(), ds["label"][rows])
    everything = load_split(ds, None, names=("label",))
    assert everything["label"].shape == (N,)


def test_load_split_bad_input(ds):
    with pytest.raises(UserError):
        load_split(ds, "train", indices=[100])
    with pytest.raises(UserError, match="no array"):
        load_split(ds, "train", names=("normals",))
    with pytest.raises(UserError, match="unknown split"):
        load_split(ds, "dev")


@pytest.mark.parametrize("channels_last", [False, True])
def test_to_float(channels_last):
    u8 = torch.randint(0, 256, (2, 5, 6, 3), dtype=torch.uint8)
    x = to_float(u8, channels_last=channels_last)
    assert x.shape == (2, 3, 5, 6) and x.dtype == torch.float32
    assert torch.equal(x, u8.permute(0, 3, 1, 2).float() / 255)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert x.is_contiguous(memory_format=fmt)
    with pytest.raises(UserError):
        to_float(x)


def test_iterate_batches_is_a_seeded_permutation():
    g = torch.Generator().manual_seed(3)
    epoch1 = list(iterate_batches(10, 4, g, drop_last=False))
    assert [len(b) for b in epoch1] == [4, 4, 2]
    assert sorted(torch.cat(epoch1).tolist()) == list(range(10))
    epoch2 = torch.cat(list(iterate_batches(10, 4, g, drop_last=False)))
    assert not torch.equal(torch.cat(epoch1), epoch2)  # a fresh order each epoch
    again = torch.cat(list(iterate_batches(10, 4, torch.Generator().manual_seed(3), drop_last=False)))
    assert torch.equal(torch.cat(epoch1), again)


def test_iterate_batches_drop_last_and_eval_order():
    assert [len(b) for b in iterate_batches(10, 4, torch.Generator().manual_seed(0))] == [4, 4]
    assert torch.cat(list(iterate_batches(5, 2, None, drop_last=False))).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(UserError):
        list(iterate_batches(5, 0))


def test_batches_gather_from_device_data(ds):
    data = load_split(ds, "train")
    g = torch.Generator().manual_seed(0)
    for idx in iterate_batches(len(data["label"]), 3, g):
        x = to_float(data["images"][idx])
        assert x.shape == (3, 3, 4, 4)
