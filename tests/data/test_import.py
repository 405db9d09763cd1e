"""import_images: folders and CSVs of real image files into the dataset store."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

import selfstudy.data.importer as importer
from selfstudy.data.importer import import_images
from selfstudy.data.store import SPLITS, open_dataset
from selfstudy.errors import UserError

COLOURS = {"blue": (0, 0, 255), "green": (0, 200, 0), "red": (255, 0, 0)}


def write_image(path, colour, size=(24, 20), mode="RGB", fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, colour)
    if mode == "L":
        img = img.convert("L")
    elif mode == "RGBA":
        img = img.convert("RGBA")
    elif mode == "P":
        img = img.convert("P", palette=Image.ADAPTIVE, colors=4)
    img.save(path, format=fmt)
    return path


def class_folder(root, per_class=10, kinds=("png",)):
    """``root/<colour>/<i>.<kind>``: every image of a class a flat colour, of mixed formats and modes."""
    for name, colour in COLOURS.items():
        for i in range(per_class):
            kind = kinds[i % len(kinds)]
            if kind == "jpg":
                write_image(root / name / f"{i}.jpg", colour)
            elif kind == "rgba":
                write_image(root / name / f"{i}.png", colour, mode="RGBA")
            elif kind == "p":
                write_image(root / name / f"{i}.png", colour, mode="P")
            else:
                write_image(root / name / f"{i}.png", colour)
    return root


def test_a_class_folder_imports_with_its_colours_labels_and_splits(tmp_path):
    src = class_folder(tmp_path / "src", per_class=20, kinds=("png", "jpg", "rgba", "p"))
    write_image(tmp_path / "src" / "green" / "grey.png", COLOURS["green"], mode="L")
    r = import_images(src, tmp_path / "ds", res=16, progress=False)
    ds = open_dataset(tmp_path / "ds")
    assert ds.config["class_names"] == ["blue", "green", "red"] and ds.config["kind"] == "import"
    assert len(ds) == 61 and r.n == 61
    images, labels, split = np.asarray(ds["images"]), np.asarray(ds["label"]), np.asarray(ds["split"])
    assert images.shape == (61, 16, 16, 3)
    files = list(csv.DictReader(open(tmp_path / "ds" / "files.csv")))
    for row in files:
        i = int(row["index"])
        assert labels[i] == ["blue", "green", "red"].index(row["class"])
        assert row["path"].startswith(row["class"] + "/")
        want = np.array(COLOURS[row["class"]])
        if row["path"].endswith("grey.png"):
            want = np.full(3, round(0.299 * 0 + 0.587 * 200 + 0.114 * 0))  # ITU-R 601-2 luma
        assert np.abs(images[i].astype(int) - want).max() <= 3, row["path"]
    # 20 per class (21 green): 3 val, 3 test each, the rest train; nothing unlabeled
    counts = json.loads((tmp_path / "ds" / "manifest.json").read_text())["import"]["class_counts"]
    assert counts == {"blue": {"train": 14, "val": 3, "test": 3}, "green": {"train": 15, "val": 3, "test": 3},
                      "red": {"train": 14, "val": 3, "test": 3}}
    assert (split < 3).all() and np.array_equal(ds.pool_indices(), ds.indices("train"))
    ds.verify()


def test_an_exif_rotated_photo_is_stored_as_it_is_seen(tmp_path):
    src = class_folder(tmp_path / "src", per_class=6)
    a = np.zeros((8, 16, 3), np.uint8)
    a[:, :8] = (255, 0, 0)  # stored: red left, blue right
    a[:, 8:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view": red on top
    Image.fromarray(a).save(src / "red" / "phone.jpg", quality=95, exif=exif.tobytes())
    r = import_images(src, tmp_path / "ds", res=8, progress=False)
    row = next(f for f in csv.DictReader(open(r.path / "files.csv")) if f["path"] == "red/phone.jpg")
    img = np.asarray(open_dataset(r.path)["images"][int(row["index"])]).astype(int)
    assert img[:3, :, 0].mean() > 200 and img[:3, :, 2].mean() < 50   # red on top
    assert img[5:, :, 2].mean() > 200 and img[5:, :, 0].mean() < 50   # blue below


def test_numeric_class_names_keep_their_numeric_order(tmp_path):
    for name in ("2", "10", "1"):
        for i in range(4):
            write_image(tmp_path / "src" / name / f"{i}.png", (int(name) * 20, 0, 0))
    rows = [[f"src/{n}/{i}.png", n] for n in ("2", "10", "1") for i in range(4)]
    r = import_images(write_csv(tmp_path / "l.csv", rows, ("path", "label")), tmp_path / "ds", res=8,
                      val_frac=0.25, test_frac=0.25, progress=False)
    folder = import_images(tmp_path / "src", tmp_path / "ds2", res=8, val_frac=0.25, test_frac=0.25,
                           progress=False)
    for ds in (open_dataset(r.path), open_dataset(folder.path)):
        assert ds.config["class_names"] == ["1", "2", "10"]
        labels, images = np.asarray(ds["label"]), np.asarray(ds["images"]).astype(int)
        assert np.array_equal(images[:, 0, 0, 0] // 20, np.array([1, 2, 10])[labels])


def test_unlabeled_images_are_in_the_pool_and_never_in_val_or_test(tmp_path):
    src = class_folder(tmp_path / "src")
    for i in range(7):
        write_image(tmp_path / "unl" / "day1" / f"u{i}.jpg", (128, 128, 128))
    import_images(src, tmp_path / "ds", unlabeled=tmp_path / "unl", res=16, progress=False)
    ds = open_dataset(tmp_path / "ds")
    labels, split = np.asarray(ds["label"]), np.asarray(ds["split"])
    assert (labels == -1).sum() == 7 and (split[labels == -1] == SPLITS["unlabeled"]).all()
    pool = ds.pool_indices()
    assert len(pool) == len(ds.indices("train")) + 7
    assert not np.isin(pool, np.concatenate([ds.indices("val"), ds.indices("test")])).any()
    assert (labels[:len(labels) - 7] >= 0).all()  # labeled images first


def test_an_unlabeled_folder_inside_the_source_is_not_a_class(tmp_path):
    src = class_folder(tmp_path / "src")
    write_image(src / "unsorted" / "x.png", (1, 2, 3))
    import_images(src, tmp_path / "ds", unlabeled=src / "unsorted", res=16, progress=False)
    ds = open_dataset(tmp_path / "ds")
    assert ds.config["class_names"] == ["blue", "green", "red"] and len(ds.indices("unlabeled")) == 1


def test_the_same_inputs_give_the_same_dataset(tmp_path):
    src = class_folder(tmp_path / "src")
    a = open_dataset(import_images(src, tmp_path / "a", res=16, seed=3, progress=False).path)
    b = open_dataset(import_images(src, tmp_path / "b", res=16, seed=3, workers=1, progress=False).path)
    c = open_dataset(import_images(src, tmp_path / "c", res=16, seed=4, progress=False).path)
    assert a.manifest["arrays"] == b.manifest["arrays"] and a.manifest["config_hash"] == b.manifest["config_hash"]
    assert a.manifest["config_hash"] != c.manifest["config_hash"]
    assert not np.array_equal(np.asarray(a["split"]), np.asarray(c["split"]))


def write_csv(path, rows, header=("path", "label", "group", "split")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_a_csv_with_groups_splits_and_unlabeled_rows(tmp_path):
    rows = []
    for obj in range(24):  # 24 objects, 3 views each, two classes; 6 unlabeled images
        label = "defect" if obj % 4 == 0 else "ok"
        for view in range(3):
            p = write_image(tmp_path / "img" / f"o{obj}_{view}.png", COLOURS["red" if label == "defect" else "blue"])
            rows.append([f"img/{p.name}", label, f"obj{obj}", ""])
    rows[0][3] = "test"  # object 0 is forced into test, with its other two views
    for k in range(6):
        write_image(tmp_path / "img" / f"u{k}.png", (9, 9, 9))
        rows.append([f"img/u{k}.png", "", "", ""])
    r = import_images(write_csv(tmp_path / "labels.csv", rows), tmp_path / "ds", res=16, val_frac=0.2,
                      test_frac=0.2, progress=False)
    ds = open_dataset(r.path)
    assert ds.config["class_names"] == ["defect", "ok"] and ds.config["source_kind"] == "csv"
    files = list(csv.DictReader(open(r.path / "files.csv")))
    by_group = {}
    for f in files:
        by_group.setdefault(f["group"], set()).add(f["split"])
    assert all(len(v) == 1 for g, v in by_group.items() if g)
    assert by_group["obj0"] == {"test"}
    assert sum(f["split"] == "unlabeled" for f in files) == 6
    assert r.class_counts["defect"] == {"train": 9, "val": 3, "test": 6}  # 6 objects: test 2 (one given)


def test_imbalanced_data_imports_and_keeps_its_counts(tmp_path):
    for i in range(60):
        write_image(tmp_path / "src" / "good" / f"{i}.png", (0, 0, 200))
    for i in range(4):
        write_image(tmp_path / "src" / "scratch" / f"{i}.png", (200, 0, 0))
    r = import_images(tmp_path / "src", tmp_path / "ds", res=16, progress=False)
    assert r.class_counts == {"good": {"train": 42, "val": 9, "test": 9}, "scratch": {"train": 2, "val": 1, "test": 1}}
    assert "scratch  train      2  val     1  test     1" in r.summary()


# ----------------------------------------------------------------------------------------- bad input
def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_corrupt_file_stops_the_import_naming_it_and_leaves_nothing(tmp_path):
    src = class_folder(tmp_path / "src")
    (src / "red" / "5.png").write_bytes((src / "red" / "5.png").read_bytes()[:40])  # truncated
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UserError, match=r"cannot import red/5.png: (corrupt or truncated|not an image).*--skip-bad"):
        import_images(src, out / "ds", res=16, progress=False)
    assert leftovers(out) == []


def test_skip_bad_leaves_unreadable_files_out_and_logs_them(tmp_path):
    src = class_folder(tmp_path / "src")
    (src / "red" / "5.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (src / "blue" / "notes.txt").write_text("not an image")
    r = import_images(src, tmp_path / "ds", res=16, skip_bad=True, progress=False)
    assert r.n == 30 - 1 and len(r.skipped) == 2
    log = (tmp_path / "ds" / "import_log.txt").read_text()
    assert "skipped\tblue/notes.txt\tnot an image Pillow can read" in log
    assert "skipped\tred/5.png\t" in log
    assert "2 unreadable file(s)" in r.summary()
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["import"]["skipped"] == 2


def test_an_interrupted_import_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    src = class_folder(tmp_path / "src")
    calls = []

    def interrupted(data, res, fit="crop"):
        calls.append(1)
        if len(calls) > 12:
            raise KeyboardInterrupt
        return np.zeros((res, res, 3), np.uint8)

    monkeypatch.setattr(importer, "decode_image", interrupted)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):
        import_images(src, out / "ds", res=16, workers=1, progress=False)
    assert leftovers(out) == []


@pytest.mark.parametrize("rows, header, match", [
    ([["a.png", "x"]], ("file", "label"), r"has no 'path' column; it needs the columns path,label"),
    ([["a.png"]], ("path",), r"has no 'label' column"),
    ([["missing.png", "x"]], ("path", "label"), r"cannot import missing.png: file not found"),
    ([["a.png", "x"], ["./a.png", "y"]], ("path", "label"), r"line 3: ./a.png is listed twice \(first on line 2\)"),
    ([["a.png", "x", "holdout"]], ("path", "label", "split"), r"line 2: unknown split 'holdout'; allowed: train"),
    ([["a.png", "", "test"]], ("path", "label", "split"), r"unlabeled image .* cannot be in the test split"),
    ([["a.png", "x"]], ("path", "label"), r"class 'x' has 1 labeled image\(s\): too few for the splits"),
])
def test_bad_csvs_get_one_clear_line(tmp_path, rows, header, match):
    write_image(tmp_path / "a.png", (1, 2, 3))
    with pytest.raises(UserError, match=match):
        import_images(write_csv(tmp_path / "l.csv", rows, header), tmp_path / "ds", res=16, progress=False)
    assert not (tmp_path / "ds").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_sources_and_options(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        import_images(tmp_path / "nope", tmp_path / "ds", progress=False)
    (tmp_path / "flat").mkdir()
    write_image(tmp_path / "flat" / "a.png", (1, 2, 3))
    with pytest.raises(UserError, match="no class sub-folders"):
        import_images(tmp_path / "flat", tmp_path / "ds", progress=False)
    (tmp_path / "flat" / "empty").mkdir()
    with pytest.raises(UserError, match="holds no files"):
        import_images(tmp_path / "flat", tmp_path / "ds", progress=False)
    src = class_folder(tmp_path / "src", per_class=4)
    with pytest.raises(UserError, match="--res 4 is not allowed"):
        import_images(src, tmp_path / "ds", res=4, progress=False)
    with pytest.raises(UserError, match="--val-frac 0 is not allowed"):
        import_images(src, tmp_path / "ds", val_frac=0, progress=False)
    import_images(src, tmp_path / "ds", res=8, progress=False)
    with pytest.raises(UserError, match="already exists"):
        import_images(src, tmp_path / "ds", res=8, progress=False)
