"""Dataset generation: configs, splits by model, determinism across worker counts, labels, failures."""

import json

import numpy as np
import pytest

from selfstudy.data import generate as G
from selfstudy.data.generate import DatasetConfig, ensure_dataset, generate, split_models
from selfstudy.data.store import SPLITS, open_dataset
from selfstudy.errors import UserError
from selfstudy.scene.render import background_depth

# Tiny and fast: 32 px, 3 chunks of 40 images (4 model groups of 10 each).
TINY = dict(n=120, res=32, chunk=40, models_per_class=24, supersample=1)


def arrays(path):
    ds = open_dataset(path)
    return {name: np.asarray(ds[name]) for name in ds.names}


@pytest.fixture(scope="module")
def tcvl(tmp_path_factory):
    cfg = DatasetConfig(factors="TCVL", seed=3, **TINY)
    return cfg, generate(cfg, tmp_path_factory.mktemp("a") / "ds", workers=1, progress=False)


@pytest.mark.parametrize("kwargs, words", [
    (dict(factors="TCXL"), "factor"),
    (dict(n=0), "n=0"),
    (dict(n=-5), "n=-5"),
    (dict(res=60), "multiple of 8"),
    (dict(res=24), "multiple of 8"),
    (dict(res=264), "multiple of 8"),
    (dict(models_per_class=11), ">= 12"),
    (dict(supersample=0), "supersampling"),
    (dict(seed=-1), "seed"),
    (dict(chunk=15), "multiple of reuse"),
])
def test_bad_configs_are_user_errors(kwargs, words):
    with pytest.raises(UserError, match=words):
        DatasetConfig(**kwargs)


def test_config_canonical_form_hash_and_name():
    a = DatasetConfig(factors="-CV-", n=100)
    assert a.factors == "0110" and a.res == 64 and a.reuse == 10
    assert a == DatasetConfig(factors="0110", n=100)
    assert a.hash() == DatasetConfig(factors="0110", n=100).hash()
    assert a.hash() != DatasetConfig(factors="0110", n=100, seed=1).hash()
    assert a.default_name() == f"0cv0-single-64px-n100-{a.hash()}"
    m = DatasetConfig(n=100, multi=True)
    assert m.res == 128 and m.reuse == 20 and m.default_name().startswith("tcvl-multi-128px-n100-")
    json.dumps(a.to_dict())  # serialisable, with the generator version
    assert a.to_dict()["generator"] == G.GENERATOR_VERSION


def test_split_models_are_disjoint_ten_one_one():
    parts = [split_models(s, 240) for s in range(3)]
    assert [len(p) for p in parts] == [200, 20, 20]
    assert len(np.unique(np.concatenate(parts))) == 240
    # The same model id has the same split whatever models_per_class is.
    small = [split_models(s, 36) for s in range(3)]
    for big, little in zip(parts, small):
        assert set(little) <= set(big)


def test_dataset_arrays_follow_the_schema(tcvl):
    cfg, path = tcvl
    ds = open_dataset(path)
    assert len(ds) == 120 and ds.config == cfg.to_dict()
    for name, (shape, dtype) in G.schema(cfg).items():
        assert ds[name].shape == (120, *shape) and ds[name].dtype == np.dtype(dtype), name
    ds.verify()
    assert ds.manifest["renderer"]


def test_splits_are_model_disjoint_and_follow_the_paper(tcvl):
    _, path = tcvl
    a = arrays(path)
    split, label, model = a["split"], a["label"], a["model_id"]
    # Groups of 10 images share a model; groups cycle train, val, test, train x9.
    assert np.bincount(split, minlength=3).tolist() == [100, 10, 10]
    assert np.all(split[10:20] == SPLITS["val"]) and np.all(split[20:30] == SPLITS["test"])
    shapes = {s: set(zip(label[split == s], model[split == s])) for s in range(3)}
    assert not shapes[0] & shapes[2] and not shapes[0] & shapes[1] and not shapes[1] & shapes[2]
    for s in range(3):
        assert set(model[split == s]) <= set(split_models(s, 24))
    groups = model.reshape(-1, 10)
    assert np.all(groups == groups[:, :1])  # model reuse within a group


def test_labels_come_from_the_same_render(tcvl):
    _, path = tcvl
    a = arrays(path)
    obj = a["instance"] == 1
    assert np.all(obj.reshape(120, -1).any(axis=1))  # every image shows its object
    np.testing.assert_array_equal(a["segmentation"], np.where(obj, (a["label"] + 1)[:, None, None], 0))
    assert np.all(a["depth"][~obj] == np.float16(background_depth()))
    assert np.all(a["depth"][obj] < 2.0)
    from selfstudy.scene.pose import euler_to_matrix, pose_class

    np.testing.assert_allclose(euler_to_matrix(a["euler"]), a["rotation"], atol=1e-5)
    np.testing.assert_array_equal(pose_class(a["rotation"]), a["pose_class"])
    assert len(np.unique(a["pose_class"])) == 5  # V=1 tilts objects every way


def test_viewpoint_off_gives_canonical_pose_and_fixed_light(tmp_path):
    path = generate(DatasetConfig(factors="TC--", seed=1, **TINY), tmp_path / "ds", workers=1, progress=False)
    a = arrays(path)
    assert np.all(a["pose_class"] == 0)
    assert np.all(a["rotation"] == a["rotation"][0]) and np.all(a["light"] == a["light"][0])


def test_same_config_same_bytes_for_any_worker_count(tcvl, tmp_path):
    cfg, first = tcvl
    again = generate(cfg, tmp_path / "one", workers=1, progress=False)
    parallel = generate(cfg, tmp_path / "two", workers=2, progress=False)
    want = open_dataset(first).manifest["arrays"]
    for other in (again, parallel):
        got = open_dataset(other).manifest["arrays"]
        assert {k: v["sha256"] for k, v in got.items()} == {k: v["sha256"] for k, v in want.items()}


def test_another_seed_gives_other_images(tcvl, tmp_path):
    cfg, first = tcvl
    other = generate(DatasetConfig(factors="TCVL", seed=4, **TINY), tmp_path / "ds", workers=1,
                     progress=False)
    a, b = arrays(first), arrays(other)
    assert not np.array_equal(a["images"], b["images"])
    assert np.array_equal(a["split"], b["split"])  # the split pattern is fixed; the draws differ


def test_ensure_dataset_reuses_by_config_hash(tmp_path, monkeypatch):
    cfg = DatasetConfig(factors="0000", n=20, res=32, chunk=20, models_per_class=12, supersample=1)
    path = ensure_dataset(cfg, root=tmp_path, workers=1, progress=False)
    assert path == tmp_path / cfg.default_name()

    def fail(*args, **kwargs):
        raise AssertionError("should not generate again")

    monkeypatch.setattr(G, "generate", fail)
    assert ensure_dataset(cfg, root=tmp_path) == path
    # Also found under another folder name.
    renamed = tmp_path / "mine"
    path.rename(renamed)
    assert ensure_dataset(cfg, root=tmp_path) == renamed


def test_default_root_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SELFSTUDY_DATA", str(tmp_path))
    assert G.default_root() == tmp_path
    monkeypatch.delenv("SELFSTUDY_DATA")
    assert str(G.default_root()) == "data/datasets"


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    real = G._write_chunk
    calls = []

    def flaky(cfg, folder, c):
        calls.append(c)
        if len(calls) == 2:
            raise RuntimeError("simulated crash in the middle")
        return real(cfg, folder, c)

    monkeypatch.setattr(G, "_write_chunk", flaky)
    out = tmp_path / "ds"
    with pytest.raises(RuntimeError, match="simulated"):
        generate(DatasetConfig(factors="TCVL", **TINY), out, workers=1, progress=False)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone too


def test_existing_output_is_refused(tcvl):
    cfg, path = tcvl
    with pytest.raises(UserError, match="already exists"):
        generate(cfg, path, workers=1, progress=False)


def test_multi_object_dataset(tmp_path):
    cfg = DatasetConfig(factors="TCVL", n=20, res=64, multi=True, chunk=20, models_per_class=12,
                        supersample=1)
    a = arrays(generate(cfg, tmp_path / "ds", workers=1, progress=False))
    assert a["classes"].shape == (20, 4) and a["rotation"].shape == (20, 4, 3, 3)
    assert np.all(a["label"] == -1)
    assert np.all(a["classes"] == a["classes"][:1])  # one group of 20 renders shares its models
    for i in range(20):
        for inst in np.unique(a["instance"][i]):
            seg = np.unique(a["segmentation"][i][a["instance"][i] == inst])
            assert len(seg) == 1  # each instance id has exactly one class
            assert seg[0] == (0 if inst == 0 else a["classes"][i, inst - 1] + 1)


def test_data_argument_names_a_folder_or_a_config(tmp_path):
    from selfstudy.data.generate import DatasetConfig, data_argument

    assert data_argument(tmp_path) == tmp_path
    cfg = data_argument("-CV-", res=32, n=500)
    assert isinstance(cfg, DatasetConfig) and (cfg.factors, cfg.res, cfg.n) == ("0110", 32, 500)
    with pytest.raises(UserError, match="neither a dataset folder nor a factor string"):
        data_argument("TCXL")


def test_data_argument_multi_suffix():
    from selfstudy.data.generate import DatasetConfig, data_argument

    cfg = data_argument("TCVL+multi", n=200)
    assert isinstance(cfg, DatasetConfig) and cfg.multi and cfg.res == 128 and cfg.factors == "1111"
    cfg = data_argument("-CV-+multi", res=32)
    assert cfg.multi and cfg.res == 32 and cfg.factors == "0110"
    assert data_argument("TCVL").multi is False
    with pytest.raises(UserError, match=r"only suffix a factor string takes is \+multi"):
        data_argument("TCVL+many")


def test_split_sizes_and_class_counts_are_the_rendered_ones(tcvl):
    cfg, path = tcvl
    a = arrays(path)
    counts = cfg.class_counts()
    for name, code in SPLITS.items():
        if name not in counts:
            continue
        labels = a["label"][a["split"] == code]
        assert counts[name].tolist() == np.bincount(labels, minlength=len(counts[name])).tolist()
        assert cfg.split_sizes()[name] == len(labels)


@pytest.mark.parametrize("n", [1000, 1234, 95, 12 * 10 * 3 + 7])
def test_split_sizes_follow_the_group_rule_for_any_n(n):
    cfg = DatasetConfig(factors="TCVL", n=n, res=32, models_per_class=12)
    sizes = cfg.split_sizes()
    groups = -(-n // cfg.reuse)
    split = np.repeat(G.GROUP_SPLITS[np.arange(groups) % 12], cfg.reuse)[:n]
    assert sizes == {name: int((split == code).sum()) for name, code in SPLITS.items() if name in sizes}
    assert sum(sizes.values()) == n
    assert {k: int(v.sum()) for k, v in cfg.class_counts().items()} == sizes
    multi = DatasetConfig(factors="TCVL", n=n, res=32, models_per_class=12, multi=True)
    assert multi.class_counts() is None and sum(multi.split_sizes().values()) == n
