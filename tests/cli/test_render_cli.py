"""`selfstudy render` and `selfstudy data`: datasets, previews, and one-line errors with exit status 2."""

import numpy as np
import pytest
from PIL import Image

from selfstudy.cli.main import main
from selfstudy.data.store import open_dataset

SMALL = ["--n", "20", "--res", "32", "--models-per-class", "12", "--supersample", "1", "--workers", "1",
         "--quiet"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "ds"
    assert main(["render", "--factors", "TCVL", "--out", str(out), *SMALL]) == 0
    return out


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("selfstudy: error: ")
    return err[0]


@pytest.mark.parametrize("args, words", [
    (["--factors", "TCXL"], "bad factor string 'TCXL'"),
    (["--n", "0"], "n=0"),
    (["--n", "-3"], "n=-3"),
    (["--res", "60"], "multiple of 8"),
    (["--res", "512"], "multiple of 8"),
    (["--models-per-class", "3"], "models_per_class"),
    (["--workers", "0"], "--workers"),
])
def test_bad_input_is_one_line_and_exit_2(args, words, capsys, tmp_path):
    assert main(["render", "--out", str(tmp_path / "ds"), *args]) == 2
    assert words in error_line(capsys)
    assert not (tmp_path / "ds").exists()


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["render", "--out", str(blocker / "ds"), *SMALL]) == 2
    assert "cannot create output folder" in error_line(capsys)
    assert main(["render", "--preview", "--out", str(blocker / "p.png"), "--res", "32"]) == 2
    assert "preview" in error_line(capsys)


def test_render_prints_the_dataset_and_reuses_it(dataset, capsys):
    ds = open_dataset(dataset)
    assert len(ds) == 20 and ds.config["factors"] == "1111" and ds["images"].shape == (20, 32, 32, 3)
    before = (dataset / "images.npy").stat().st_mtime_ns
    assert main(["render", "--factors", "1111", "--out", str(dataset), *SMALL]) == 0  # same config: reuse
    assert capsys.readouterr().out.strip() == str(dataset)
    assert (dataset / "images.npy").stat().st_mtime_ns == before
    assert main(["render", "--factors", "0000", "--out", str(dataset), *SMALL]) == 2  # another config
    assert "already exists" in error_line(capsys)


def test_render_into_the_default_root(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SELFSTUDY_DATA", str(tmp_path))
    assert main(["render", "--factors=-CV-", *SMALL]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith(str(tmp_path / "0cv0-single-32px-n20-"))
    assert open_dataset(printed).config["factors"] == "0110"


def test_data_info_and_verify(dataset, capsys):
    assert main(["data", "info", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "images    20" in out and "images  uint8" not in out and "train" in out and "segmentation" in out
    assert main(["data", "verify", str(dataset)]) == 0
    assert "ok" in capsys.readouterr().out


def test_verify_names_the_corrupted_array(dataset, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    images = np.load(copy / "images.npy", mmap_mode="r+")
    images[3, 5, 5, 0] ^= 0xFF
    images.flush()
    del images
    assert main(["data", "verify", str(copy)]) == 2
    line = error_line(capsys)
    assert "images (checksum mismatch)" in line and "depth" not in line
    assert main(["data", "info", str(tmp_path / "nothing")]) == 2
    assert "not a selfstudy dataset" in error_line(capsys)


@pytest.mark.parametrize("multi", [False, True])
def test_preview_png(tmp_path, capsys, multi):
    out = tmp_path / "preview.png"
    args = ["render", "--preview", "--out", str(out), "--count", "3", "--res", "32", "--supersample", "1"]
    assert main(args + (["--multi"] if multi else [])) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 300
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.std() > 20  # not blank
    assert [p.name for p in tmp_path.iterdir()] == ["preview.png"]  # no temporary file left
