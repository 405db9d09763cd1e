"""``selfstudy data``: inspect and check dataset folders."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  selfstudy data info data/datasets/tcvl-single-64px-n100000-0123456789ab
  selfstudy data verify data/datasets/tcvl-single-64px-n100000-0123456789ab

verify recomputes every array's checksum and exits with status 2 naming any corrupted array.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "data", help="inspect or verify a dataset folder",
        description="Inspect or verify a dataset folder made by `selfstudy render`.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
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
        print("splits    " + ", ".join(f"{k} {v}" for k, v in counts.items()))
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
