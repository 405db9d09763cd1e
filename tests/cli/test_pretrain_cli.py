"""``selfstudy pretrain`` and ``selfstudy bench`` from the command line."""

import numpy as np
import pytest

from selfstudy.cli.main import main
from selfstudy.data.store import DatasetWriter


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """48 random 16 px images of 4 labels (2/3 train)."""
    path = tmp_path_factory.mktemp("data") / "tiny"
    rng = np.random.default_rng(0)
    n = 48
    split = np.where(np.arange(n) < 32, 0, 2).astype(np.uint8)
    schema = {"images": ((16, 16, 3), np.uint8), "label": ((), np.int64), "split": ((), np.uint8)}
    with DatasetWriter(path, {"kind": "cli-test"}, schema, n) as w:
        w.write(0, {"images": rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
                    "label": rng.integers(0, 4, n), "split": split})
    return path


def pretrain_args(dataset, out, *extra, **flags):
    """``selfstudy pretrain`` arguments; ``flags`` replace defaults (``method="cmc"`` -> ``--method cmc``)."""
    opts = {"method": "rotation", "data": str(dataset), "backbone": "resnet9-tiny", "out": str(out), **flags}
    args = ["pretrain", "--no-progress"]
    for k, v in opts.items():
        args += [f"--{k}", str(v)]
    return args + list(extra)


def test_pretrain_runs_and_prints_the_checkpoint(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(pretrain_args(dataset, out, "batch_size=16", "steps=2", res=16, space="lab")) == 0
    assert capsys.readouterr().out.strip() == str(out / "final.pt")
    assert (out / "final.pt").is_file() and (out / "log.jsonl").is_file()


@pytest.mark.parametrize("flags, extra, message", [
    ({"method": "jigsaw"}, [], "unknown method 'jigsaw'"),
    ({"backbone": "vgg16"}, [], "unknown backbone 'vgg16'"),
    ({"res": 20}, [], "cannot take 20 px input"),
    ({}, ["bogus=3"], "unknown option(s) bogus for rotation; allowed:"),
    ({"data": "XXXX"}, [], "neither a dataset folder nor a factor string"),
])
def test_bad_input_is_one_line_and_exit_2(dataset, tmp_path, capsys, flags, extra, message):
    assert main(pretrain_args(dataset, tmp_path / "run", "batch_size=16", "steps=1", *extra, **flags)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("selfstudy: error: ") and message in err[0]
    assert not (tmp_path / "run" / "final.pt").exists()


def test_checkpoint_of_another_backbone_in_out_is_exit_2(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(pretrain_args(dataset, out, "batch_size=16", "steps=1")) == 0
    assert main(pretrain_args(dataset, out, "batch_size=16", "steps=1", backbone="resnet18-tiny")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "backbone: 'resnet9-tiny' there, 'resnet18-tiny' here" in err[0]


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main(["pretrain", "--help"])
    assert e.value.code == 0
    assert "selfstudy pretrain --method rotation" in capsys.readouterr().out


def test_bench_runs_scripts_by_name_and_prints_their_json(tmp_path, monkeypatch, capsys):
    (tmp_path / "fast.py").write_text('import json, sys\nprint("warming up")\n'
                                      'print(json.dumps({"benchmark": "fast", "args": sys.argv[1:]}))\n')
    (tmp_path / "broken.py").write_text("raise SystemExit(3)\n")
    monkeypatch.setenv("SELFSTUDY_BENCHMARKS", str(tmp_path))
    assert main(["bench", "fast", "--args=--bf16"]) == 0
    assert capsys.readouterr().out.strip() == '{"benchmark": "fast", "args": ["--bf16"]}'
    assert main(["bench", "broken"]) == 1
    assert '"error": "exit 3' in capsys.readouterr().out
    assert main(["bench", "no_such_benchmark"]) == 2
    assert "unknown benchmark 'no_such_benchmark'; available: broken, fast" in capsys.readouterr().err
