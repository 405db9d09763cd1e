"""End to end on real images: scikit-learn's 1,797 handwritten digits, written as PNG files, imported
and learned. Nothing can be downloaded at test time; the digits ship inside scikit-learn."""

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def test_digits_import_and_train_well_above_chance(tmp_path):
    datasets = pytest.importorskip("sklearn.datasets")
    from selfstudy.data.importer import import_images
    from selfstudy.data.store import open_dataset
    from selfstudy.train.budget import Budget
    from selfstudy.train.finetune import run

    digits = datasets.load_digits()
    for i, (img, y) in enumerate(zip(digits.images, digits.target)):
        grey = Image.fromarray((img * (255 / 16)).astype(np.uint8), "L").resize((32, 32), Image.BICUBIC)
        (tmp_path / "digits" / str(y)).mkdir(parents=True, exist_ok=True)
        grey.save(tmp_path / "digits" / str(y) / f"{i:04d}.png")

    r = import_images(tmp_path / "digits", tmp_path / "ds", res=32, progress=False)
    ds = open_dataset(r.path)
    assert len(ds) == 1797 and ds.config["class_names"] == [str(d) for d in range(10)]
    # Pixel values survive the round trip: a stored image is its (greyscale) PNG, three channels equal.
    images = np.asarray(ds["images"])
    assert (images[..., 0] == images[..., 1]).all() and (images[..., 1] == images[..., 2]).all()
    assert sum(c["test"] for c in r.class_counts.values()) >= 250

    budget = Budget(min_steps=150, max_steps=150, batch_size=64, evals=3, patience=0, val_size=None)
    result = run(ds, "classification", backbone="resnet9-tiny", n_labels=500, budget=budget, seed=0)
    print(f"digits: test accuracy {result['test']:.3f} after {result['steps']} steps on 500 labels")
    assert result["test"] > 0.6, result["test"]  # chance is 0.1
