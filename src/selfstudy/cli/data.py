"""``selfstudy data``: import your own images, inspect and check dataset folders."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  selfstudy data import photos/ --out data/datasets/photos --res 64 --unlabeled photos-unlabeled/
  selfstudy data info data/datasets/tcvl-single-64px-n100000-0123456789ab
  selfstudy data verify data/datasets/tcvl-single-64px-n100000-0123456789ab

verify recomputes every array's checksum and exits with status 2 naming any corrupted array.
"""

IMPORT_EPILOG = """examples:
  selfstudy data import photos/ --out data/datasets/photos
      one sub-folder per class (photos/cat/*.jpg, photos/dog/*.jpg), 64 px, centre-cropped
  selfstudy data import photos/ --out data/datasets/photos --unlabeled more-photos/ --res 32 --pad
      add unlabeled images to the pretraining pool; pad to a square instead of cropping
  selfstudy data import labels.csv --out data/datasets/parts --skip-bad --val-frac 0.1 --test-frac 0.2
      a CSV with columns path,label (empty label = unlabeled) and optional group,split

Splits are drawn per class (seeded by --seed); images of one `group` always share a split. The
pretraining pool is the unlabeled images plus the labeled train split: val and test never enter it.
A file that cannot be read stops the import with its name (exit status 2), unless --skip-bad, which
leaves it out and lists it in import_log.txt in the dataset folder. Nothing is written until every
image is decoded; an interrupted import leaves no dataset behind.
Then: selfstudy finetune --data data/datasets/photos --task classification --labels 100
      selfstudy pretrain --data data/datasets/photos --method simclr --backbone resnet9-tiny --out runs/p
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "data", help="inspect or verify a dataset folder",
        description="Import your own images as a dataset folder, or inspect or verify one made by "
                    "`selfstudy render` or `selfstudy data import`.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    imp = sub.add_parser("import", help="turn a folder of class sub-folders, or a CSV, into a dataset folder",
                         description="Decode images with Pillow (EXIF orientation applied, every mode to "
                                     "RGB), fit them to RES x RES, draw seeded class-stratified splits "
                                     "and write a dataset folder.",
                         epilog=IMPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("source", metavar="SOURCE",
                     help="a folder with one sub-folder per class, or a CSV with columns path,label[,group,split]")
    imp.add_argument("--out", required=True, metavar="DIR", help="the dataset folder to create (must not exist)")
    imp.add_argument("--res", type=int, default=64, help="side of the stored square images, pixels "
                                                          "(default: %(default)s)")
    imp.add_argument("--pad", action="store_true",
                     help="scale the longer side to RES and pad with black (default: crop the centre square)")
    imp.add_argument("--unlabeled", metavar="FOLDER", default=None,
                     help="a folder of unlabeled images for the pretraining pool")
    imp.add_argument("--skip-bad", action="store_true",
                     help="leave unreadable files out (listed in import_log.txt) instead of stopping")
    imp.add_argument("--seed", type=int, default=0, help="seed of the split draw (default: %(default)s)")
    imp.add_argument("--val-frac", type=float, default=0.15,
                     help="share of each class's images for validation (default: %(default)s)")
    imp.add_argument("--test-frac", type=float, default=0.15,
                     help="share of each class's images for test (default: %(default)s)")
    imp.add_argument("--workers", type=int, default=None, help="decoding threads (default: one per core)")
    imp.add_argument("--no-progress", action="store_true", help="no progress bar")
    imp.set_defaults(func=run_import)
    info = sub.add_parser("info", help="print a dataset's config, arrays and split sizes",
                          epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    info.add_argument("path", help="dataset folder")
    info.set_defaults(func=run_info)
    verify = sub.add_parser("verify", help="check every array against its checksum",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    verify.add_argument("path", help="dataset folder")
    verify.set_defaults(func=run_verify)


def run_info(args) -> int:
    from selfstudy.data.store import SPLITS, open_dataset

    ds = open_dataset(args.path)
    info = ds.info()
    print(f"dataset   {info['path']}")
    print(f"images    {info['n']}")
    cfg = info["config"]
    print("config    " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    print(f"hash      {info['config_hash']}   selfstudy {info['selfstudy_version']}")
    if "renderer" in ds.manifest:
        print(f"renderer  {ds.manifest['renderer']}")
    if "split" in ds:
        counts = {name: len(ds.indices(name)) for name in SPLITS}
        if not counts["unlabeled"]:
            del counts["unlabeled"]  # rendered datasets: every image has a label
        print("splits    " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if "import" in ds.manifest:
        imp = ds.manifest["import"]
        print(f"classes   {len(imp['class_counts'])} (train/val/test images per class)")
        for name in ds.config.get("class_names", imp["class_counts"]):  # in class-id order
            c = imp["class_counts"][name]
            print(f"  {name}  {c['train']}/{c['val']}/{c['test']}")
        if imp.get("skipped"):
            print(f"skipped   {imp['skipped']} unreadable file(s) at import, listed in {ds.path / imp['log']}")
    print("arrays")
    width = max(len(k) for k in info["arrays"])
    for name, desc in info["arrays"].items():
        print(f"  {name:<{width}}  {desc}")
    return 0


def run_verify(args) -> int:
    from selfstudy.data.store import open_dataset

    ds = open_dataset(args.path)
    ds.verify()  # raises UserError naming the corrupted arrays
    print(f"ok: {len(ds.names)} arrays of {ds.path} match their checksums")
    return 0


def run_import(args) -> int:
    from selfstudy.data.importer import import_images

    result = import_images(args.source, args.out, unlabeled=args.unlabeled, res=args.res,
                           fit="pad" if args.pad else "crop", seed=args.seed, val_frac=args.val_frac,
                           test_frac=args.test_frac, skip_bad=args.skip_bad, workers=args.workers,
                           progress=not args.no_progress)
    print(result.summary())
    return 0
