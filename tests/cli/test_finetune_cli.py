"""``selfstudy finetune`` and ``selfstudy probe`` from the command line."""

import json

import numpy as np
import pytest

from selfstudy.cli.main import main
from selfstudy.data.store import DatasetWriter


def make_dataset(path, n=120, res=16, factors="1111"):
    """Each class a noisy flat colour, 60 % train, 20 % val, 20 % test."""
    rng = np.random.default_rng(0)
    label = np.arange(n) % 10
    colours = rng.uniform(0, 255, (10, 3))
    images = (colours[label][:, None, None, :] + rng.normal(0, 20, (n, res, res, 3))).clip(0, 255)
    split = np.zeros(n, np.uint8)
    split[n * 6 // 10:n * 8 // 10] = 1
    split[n * 8 // 10:] = 2
    schema = {"images": ((res, res, 3), "uint8"), "label": ((), "int64"), "split": ((), "uint8"),
              "pose_class": ((), "int64")}
    with DatasetWriter(path, {"factors": factors}, schema, n) as w:
        w.write(0, {"images": images.astype(np.uint8), "label": label, "split": split,
                    "pose_class": label % 5})
    return path


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {"tcvl": make_dataset(root / "tcvl"), "fixed": make_dataset(root / "fixed", factors="TC-L")}


@pytest.fixture(scope="module")
def pretrained(data, tmp_path_factory):
    """A real (2-step) Rotation pretraining run of resnet9-tiny."""
    out = tmp_path_factory.mktemp("runs") / "rot"
    assert main(["pretrain", "--no-progress", "--method", "rotation", "--data", str(data["tcvl"]),
                 "--backbone", "resnet9-tiny", "--out", str(out), "batch_size=16", "steps=2"]) == 0
    return out / "final.pt"


TINY = ["min_steps=4", "max_steps=4", "batch_size=16", "evals=2"]


def test_finetune_from_a_pretraining_run_writes_the_result(data, pretrained, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "res" / "r.json"
    code = main(["finetune", "--no-progress", "--data", str(data["tcvl"]), "--task", "classification",
                 "--labels", "30", "--init", str(pretrained), "--res", "16", "--out", str(out), *TINY])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("finetune rotation classification n=30 seed=0 resnet9-tiny: test accuracy")
    r = json.loads(out.read_text())
    assert r["protocol"] == "finetune" and r["steps"] == 4 and r["budget"]["max_steps"] == 4
    assert set(r) >= {"metric", "higher_is_better", "val", "test", "val_last", "test_last",
                      "still_improving", "steps", "seconds", "metrics", "subset_sha", "budget"}


def test_scratch_json_and_probe(data, pretrained, capsys):
    capsys.readouterr()
    assert main(["finetune", "--no-progress", "--json", "--data", str(data["tcvl"]), "--task", "pose",
                 "--labels", "20", "--backbone", "resnet9-tiny", *TINY]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["protocol"] == "scratch" and r["task"] == "pose"
    assert main(["probe", "--data", str(data["tcvl"]), "--init", str(pretrained), "--labels", "30",
                 "steps=20"]) == 0
    assert capsys.readouterr().out.startswith("linear rotation classification n=30")
    assert main(["probe", "--data", str(data["tcvl"]), "--init", str(pretrained), "--labels", "30",
                 "--knn", "k=3"]) == 0
    assert capsys.readouterr().out.startswith("knn rotation classification n=30")


@pytest.mark.parametrize("args, message", [
    (["--task", "segmentationz"], "unknown task 'segmentationz'; allowed: classification"),
    (["--labels", "500"], "larger than the train split, which has 72 images"),
    (["--labels", "-5"], "--labels -5 is not allowed"),
    (["--labels", "0"], "--labels 0 is not allowed"),
    (["--task", "pose", "--data", "fixed"], "fixed viewpoint (V=0"),
    (["--backbone", "resnet18-tiny", "--init", "pretrained"], "--backbone resnet9-tiny"),
    (["max_stepz=3"], "unknown budget option(s) max_stepz"),
    (["--res", "32"], "is 16 px but --res 32"),
    (["--data", "TXVL"], "neither a dataset folder nor a factor string"),
])
def test_bad_input_is_one_line_and_exit_2(data, pretrained, args, message, capsys):
    opts = {"--data": str(data["tcvl"]), "--labels": "10", "--task": "classification"}
    rest = []
    it = iter(args)
    for a in it:
        if a.startswith("--"):
            v = next(it)
            opts[a] = {"fixed": str(data["fixed"]), "pretrained": str(pretrained)}.get(v, v)
        else:
            rest.append(a)
    argv = ["finetune", "--no-progress"] + [x for kv in opts.items() for x in kv] + rest
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("selfstudy: error: ") and message in err


def test_help_has_examples(capsys):
    for cmd in ("finetune", "probe"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        assert "examples:" in capsys.readouterr().out
