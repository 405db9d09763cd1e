"""``selfstudy data import`` and what runs on an imported folder: info, verify, finetune, pretrain."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from selfstudy.cli.main import main
from selfstudy.models import build_backbone

pytestmark = pytest.mark.usefixtures("one_thread")

COLOURS = {"cyan": (0, 220, 220), "magenta": (220, 0, 220), "yellow": (220, 220, 0)}


def image_folder(root, per_class=12, unlabeled=6):
    """Three classes of noisy flat colours (PNG and JPEG), plus a folder of unlabeled images."""
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        for i in range(per_class):
            a = (np.array(colour) + rng.normal(0, 15, (20, 28, 3))).clip(0, 255).astype(np.uint8)
            (root / "labeled" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(root / "labeled" / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    (root / "unlabeled").mkdir()
    for i in range(unlabeled):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / "unlabeled" / f"u{i}.png")
    return root


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = image_folder(tmp_path_factory.mktemp("photos"))
    code = main(["data", "import", str(root / "labeled"), "--out", str(root / "ds"), "--res", "32",
                 "--unlabeled", str(root / "unlabeled"), "--no-progress"])
    assert code == 0
    return root / "ds"


def test_import_prints_a_summary_and_info_and_verify_accept_it(imported, capsys):
    assert main(["data", "info", str(imported)]) == 0
    out = capsys.readouterr().out
    assert "splits    train 24, val 6, test 6, unlabeled 6" in out
    assert "  cyan  8/2/2" in out
    assert main(["data", "verify", str(imported)]) == 0
    assert "ok: 3 arrays" in capsys.readouterr().out


def test_bad_files_exit_2_with_one_line(tmp_path, capsys):
    root = image_folder(tmp_path, per_class=4, unlabeled=1)
    (root / "labeled" / "cyan" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    code = main(["data", "import", str(root / "labeled"), "--out", str(tmp_path / "ds"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("selfstudy: error: cannot import cyan/broken.jpg: ")
    assert "--skip-bad" in err[-1] and not (tmp_path / "ds").exists()
    code = main(["data", "import", str(root / "labeled"), "--out", str(tmp_path / "ds"), "--no-progress",
                 "--skip-bad", "--res", "16"])
    out = capsys.readouterr().out
    assert code == 0 and "skipped   1 unreadable file(s)" in out


def test_import_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["data", "import", "--help"])
    out = capsys.readouterr().out
    assert "selfstudy data import photos/ --out data/datasets/photos" in out and "--skip-bad" in out


def test_finetune_on_an_imported_folder_uses_its_classes(imported, capsys):
    code = main(["finetune", "--data", str(imported), "--task", "classification", "--labels", "9",
                 "--backbone", "resnet9-tiny", "--json", "--no-progress", "min_steps=4", "max_steps=4",
                 "evals=1", "batch_size=8"])
    assert code == 0
    r = json.loads(capsys.readouterr().out)
    assert {k for k in r["metrics"] if k.startswith("test/class_accuracy/")} == \
        {f"test/class_accuracy/{c}" for c in COLOURS}
    labels = np.load(imported / "label.npy")
    assert np.bincount(labels[r["subset_indices"]], minlength=3).tolist() == [3, 3, 3]  # balanced
    assert (np.load(imported / "split.npy")[r["subset_indices"]] == 0).all()  # from the labeled train split


def test_a_label_count_above_the_labeled_train_split_is_refused(imported, capsys):
    code = main(["finetune", "--data", str(imported), "--labels", "30", "--backbone", "resnet9-tiny",
                 "--no-progress"])
    assert code == 2
    assert "label count 30 is larger than the train split, which has 24 images" in capsys.readouterr().err


def test_finetune_from_a_weights_file(imported, tmp_path, capsys):
    torch.manual_seed(0)
    sd = {k: v for k, v in build_backbone("resnet18-tiny").state_dict().items() if not k.startswith("prepool.")}
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(1000, 64), torch.zeros(1000)
    torch.save({"state_dict": sd}, tmp_path / "imagenet-r18.pth")
    args = ["finetune", "--data", str(imported), "--labels", "6", "--init", str(tmp_path / "imagenet-r18.pth"),
            "--no-progress", "min_steps=2", "max_steps=2", "evals=1", "batch_size=4"]
    assert main(args) == 2
    assert "name the backbone it was saved from with --backbone" in capsys.readouterr().err
    assert main(args + ["--backbone", "resnet9-tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not fit backbone resnet9-tiny" in err and len(err.splitlines()) == 1
    assert main(args + ["--backbone", "resnet18-tiny", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["protocol"] == "finetune" and r["method"] == "weights:imagenet-r18" and r["backbone"] == "resnet18-tiny"


def test_pretraining_draws_from_train_and_unlabeled_only(imported, tmp_path):
    from selfstudy.train.pretrain import pretrain

    final = pretrain(imported, "rotation", "resnet9-tiny", out=tmp_path / "run", overrides=["steps=1",
                     "batch_size=8"], progress=False)
    state = torch.load(final, weights_only=True)
    assert state["identity"]["num_train"] == 24 + 6
    assert state["dataset"]["config"]["kind"] == "import"
