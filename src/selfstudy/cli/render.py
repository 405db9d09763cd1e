"""``selfstudy render``: render a dataset into the store, or a preview grid of a few scenes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

EPILOG = """examples:
  selfstudy render --factors TCVL --n 100000 --res 64      # single objects, all factors varied
  selfstudy render --factors 0110 --n 20000 --seed 1       # texture and lighting fixed (-CV-)
  selfstudy render --multi --n 50000                       # 4 objects per image, 128 px
  selfstudy render --preview --factors TCVL --out preview.png
  selfstudy render --preview --multi

Factors are 4 characters in TCVL order (Texture, Colour, Viewpoint, Lighting): bits like 0110 or
letters like -CV- (a dash is off; write --factors=-CV- when the string starts with a dash). Without
--out the dataset goes to $SELFSTUDY_DATA (default ./data/datasets) under a name made from its
config, and an existing one with the same config is reused.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "render", help="render a synthetic dataset (or a preview of one)",
        description="Render a dataset of synthetic scenes with all their labels (class, pose, depth, "
                    "segmentation) into a dataset folder, over one process per core.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--factors", default="TCVL",
                   help="difficulty factors, e.g. TCVL, 0110 (= -CV-) (default TCVL)")
    p.add_argument("--n", type=int, default=100_000, help="number of images (default 100000)")
    p.add_argument("--res", type=int, default=None,
                   help="image side, pixels: a multiple of 8 from 32 to 256 (default 64; 128 with --multi)")
    p.add_argument("--multi", action="store_true", help="4 objects per scene (segmentation, depth)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--models-per-class", type=int, default=240, dest="models_per_class",
                   help="distinct shapes per class, split 10/1/1 into train/val/test (default 240)")
    p.add_argument("--supersample", type=int, default=2,
                   help="render RGB at this many times the resolution and average (default 2)")
    p.add_argument("--out", default=None,
                   help="dataset folder (with --preview: the PNG file, default preview.png)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    p.add_argument("--preview", action="store_true",
                   help="write a PNG grid of a few scenes (RGB, depth, segmentation) instead of a dataset")
    p.add_argument("--count", type=int, default=8, help="scenes in the preview (default 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from selfstudy.data.generate import DatasetConfig, ensure_dataset, generate
    from selfstudy.data.store import open_dataset
    from selfstudy.errors import UserError

    cfg = DatasetConfig(factors=args.factors, n=args.n, res=args.res, multi=args.multi, seed=args.seed,
                        models_per_class=args.models_per_class, supersample=args.supersample)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"bad --workers {args.workers}: it must be a whole number >= 1")
    if args.preview:
        out = Path(args.out or "preview.png")
        write_preview(cfg, out, count=args.count)
        print(out)
        return 0
    if args.out is None:
        path = ensure_dataset(cfg, workers=args.workers, progress=not args.quiet)
    else:
        path = Path(args.out)
        existing = (path / "manifest.json").is_file() and open_dataset(path).manifest.get("config_hash")
        if existing == cfg.hash():  # already made with this config
            print(path)
            return 0
        path = generate(cfg, path, workers=args.workers, progress=not args.quiet)
    print(path)
    return 0


def write_preview(cfg, out: Path, count: int = 8) -> Path:
    """Render ``count`` scenes of ``cfg`` (each its own model) and save a grid: RGB with the class
    names, depth (colour-mapped, metres) and segmentation (colour-mapped, with a legend)."""
    import dataclasses

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from selfstudy.data.generate import render_chunk
    from selfstudy.errors import UserError
    from selfstudy.scene.classes import CLASSES

    if not 1 <= count <= 64:
        raise UserError(f"bad preview --count {count}: allowed 1..64")
    parent = out.parent if str(out.parent) else Path(".")
    if out.suffix.lower() != ".png":
        raise UserError(f"preview file {out} must end in .png")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UserError(f"cannot write the preview into {parent}: not an existing, writable folder")
    small = dataclasses.replace(cfg, n=count, reuse=1, chunk=count)  # a different model in every scene
    arrays = render_chunk(small, 0)

    colours = plt.get_cmap("tab10")(np.arange(len(CLASSES)))[:, :3]
    seg_cmap = ListedColormap(np.vstack([[0.08, 0.08, 0.08], colours]))
    # Depth: one colour scale over the objects; the far background plane in grey.
    depth = np.ma.masked_where(arrays["instance"] == 0, arrays["depth"].astype(np.float32))
    depth_cmap = plt.get_cmap("viridis").with_extremes(bad=(0.55, 0.55, 0.55))
    lo, hi = (float(depth.min()), float(depth.max())) if depth.count() else (0.0, 1.0)
    fig, axes = plt.subplots(3, count, figsize=(1.9 * count + 0.8, 6.4), squeeze=False,
                             layout="constrained")
    for i in range(count):
        if cfg.multi:
            names = sorted({CLASSES[c] for c in arrays["classes"][i]})
            title = "\n".join([", ".join(names[:2]), ", ".join(names[2:])])
        else:
            title = f"{CLASSES[arrays['label'][i]]}\npose {arrays['pose_class'][i]}"
        panels = ((arrays["images"][i], {}, title),
                  (depth[i], {"cmap": depth_cmap, "vmin": lo, "vmax": hi, "interpolation": "nearest"}, None),
                  (arrays["segmentation"][i], {"cmap": seg_cmap, "vmin": 0, "vmax": len(CLASSES),
                                               "interpolation": "nearest"}, None))
        for row, (image, kw, label) in enumerate(panels):
            ax = axes[row, i]
            im = ax.imshow(image, **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if label:
                ax.set_title(label, fontsize=8)
            if row == 1 and i == count - 1:
                bar = fig.colorbar(im, ax=axes[1, :], fraction=0.02, pad=0.01)
                bar.set_label("depth, m (grey: background)", fontsize=7)
    axes[0, 0].set_ylabel("RGB")
    axes[1, 0].set_ylabel("depth")
    axes[2, 0].set_ylabel("segmentation")
    legend = [Patch(color=colours[c], label=name) for c, name in enumerate(CLASSES)]
    fig.legend(handles=legend, loc="outside lower center", ncol=min(len(CLASSES), 2 * count),
               fontsize=7, frameon=False)
    fig.suptitle(f"{cfg.default_name().rsplit('-', 2)[0]}  (factors {cfg.factors}, seed {cfg.seed})",
                 fontsize=9)
    tmp = out.with_name(f".{out.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return out
