import json
import os

import numpy as np
import pytest

from selfstudy.data.store import Dataset, DatasetWriter, config_hash, write_slice
from selfstudy.errors import UserError

SCHEMA = {"images": ((4, 4, 3), np.uint8), "label": ((), np.int64), "split": ((), np.uint8)}


def _write(path, n=10, seed=0):
    rng = np.random.default_rng(seed)
    with DatasetWriter(path, {"seed": seed, "n": n}, SCHEMA, n) as w:
        w.write(0, {"images": rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8),
                    "label": np.arange(n) % 3,
                    "split": np.array([0] * (n - 4) + [1, 1, 2, 2], np.uint8)})
    return path


def test_round_trip_values_and_manifest(tmp_path):
    p = _write(tmp_path / "ds")
    ds = Dataset(p)
    assert len(ds) == 10
    assert ds["images"].shape == (10, 4, 4, 3) and ds["images"].dtype == np.uint8
    assert list(ds["label"]) == [i % 3 for i in range(10)]
    np.testing.assert_array_equal(ds.indices("train"), np.arange(6))
    np.testing.assert_array_equal(ds.indices("test"), [8, 9])
    assert ds.manifest["config_hash"] == config_hash({"n": 10, "seed": 0})
    ds.verify()


def test_same_config_same_bytes(tmp_path):
    a, b = _write(tmp_path / "a"), _write(tmp_path / "b")
    for name in SCHEMA:
        assert (a / f"{name}.npy").read_bytes() == (b / f"{name}.npy").read_bytes()
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    assert ma["arrays"] == mb["arrays"]


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_verify_names_the_corrupted_array(tmp_path):
    p = _write(tmp_path / "ds")
    arr = np.load(p / "label.npy", mmap_mode="r+")
    arr[3] = 99
    arr.flush()
    del arr
    with pytest.raises(UserError, match=r"label \(checksum mismatch\)"):
        Dataset(p).verify()


def test_interrupted_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with DatasetWriter(tmp_path / "ds", {}, SCHEMA, 5) as w:
            w.write(0, {"label": np.zeros(2, np.int64)})
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []


def test_worker_slices_fill_the_same_arrays(tmp_path):
    w = DatasetWriter(tmp_path / "ds", {}, {"label": ((), np.int64)}, 6)
    write_slice(w.tmp_path, 3, {"label": np.array([3, 4, 5])})
    write_slice(w.tmp_path, 0, {"label": np.array([0, 1, 2])})
    w.finalize()
    assert list(Dataset(tmp_path / "ds")["label"]) == [0, 1, 2, 3, 4, 5]


def test_errors(tmp_path):
    with pytest.raises(UserError, match="not a selfstudy dataset"):
        Dataset(tmp_path)
    with pytest.raises(UserError, match="at least one image"):
        DatasetWriter(tmp_path / "x", {}, SCHEMA, 0)
    p = _write(tmp_path / "ds")
    with pytest.raises(UserError, match="already exists"):
        DatasetWriter(p, {}, SCHEMA, 3)
    with pytest.raises(UserError, match="unknown split"):
        Dataset(p).indices("training")
    with pytest.raises(UserError, match="has no array 'depth'"):
        Dataset(p)["depth"]


def test_shape_mismatch_is_reported(tmp_path):
    p = _write(tmp_path / "ds")
    np.save(p / "label.npy", np.zeros(3, np.int64))
    with pytest.raises(UserError, match="corrupted"):
        Dataset(p)["label"]


def test_unwritable_destination_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot create output folder|not writable|cannot write"):
        DatasetWriter(blocker / "ds", {}, SCHEMA, 3)
