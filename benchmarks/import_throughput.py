"""Import throughput: ``selfstudy data import`` of a few thousand 64 px PNG files, against decoding alone.

Prints one JSON line. The reference is measured in the same run on the same files: reading and decoding
every file with Pillow (``decode_image``, one thread, nothing written). The import does that plus the
split draw, the scratch and final memory-mapped arrays, the checksums, ``files.csv`` and the manifest;
``ratio_to_decode`` (import images/s over decode images/s, one thread each; ``cpu_ratio_to_decode``
the same per CPU second) is what that costs, and
``scaling`` is the import with one decoding thread per core over the import with one. Each figure also
comes as images per CPU second, which drifts less than wall time when other work shares the machine.

    .venv/bin/python benchmarks/import_throughput.py            # 3,000 files, about half a minute on 2 cores
    .venv/bin/python benchmarks/import_throughput.py --quick    # 1,000 files
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def write_pngs(root: Path, n: int, res: int, classes: int = 10) -> list[Path]:
    """``n`` PNG files in ``classes`` class folders: smooth colour gradients with noise, like small
    photographs (PNG of pure noise or of flat colour would make decoding unrealistically slow or fast)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:res, 0:res] / res
    paths = []
    for i in range(n):
        c = rng.uniform(0, 255, (3, 3))
        img = c[:, 0] + c[:, 1] * xx[..., None] + c[:, 2] * yy[..., None] * 0.5
        img = (img + rng.normal(0, 8, img.shape)).clip(0, 255).astype(np.uint8)
        p = root / f"class{i % classes}" / f"{i:05d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(p)
        paths.append(p)
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1,000 files (noisier)")
    p.add_argument("--n", type=int, default=3000, help="number of PNG files (default: %(default)s)")
    p.add_argument("--res", type=int, default=64, help="their size and the import resolution, pixels")
    args = p.parse_args()
    n = 1000 if args.quick else args.n

    from selfstudy.data.decode import decode_image
    from selfstudy.data.importer import default_workers, import_images

    cores = default_workers()
    result = {"benchmark": "import_throughput", "n": n, "res": args.res, "cores": cores}
    with tempfile.TemporaryDirectory(prefix="selfstudy-bench-") as tmp:
        tmp = Path(tmp)
        paths = write_pngs(tmp / "src", n, args.res)

        def timed(fn):
            cpu0, t0 = _cpu(), time.perf_counter()
            fn()
            wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
            return {"images_per_s": round(n / wall, 1), "images_per_cpu_s": round(n / cpu, 1)}

        def decode_all():
            for f in paths:
                decode_image(f.read_bytes(), args.res)

        decode_all()  # warm the page cache, so both sides read from memory
        result["decode_only"] = timed(decode_all)
        one = timed(lambda: import_images(tmp / "src", tmp / "one", res=args.res, workers=1, progress=False))
        all_ = timed(lambda: import_images(tmp / "src", tmp / "all", res=args.res, workers=cores,
                                           progress=False))
    ref = result["decode_only"]
    result["import_one_thread"] = one | {
        "ratio_to_decode": round(one["images_per_s"] / ref["images_per_s"], 3),
        "cpu_ratio_to_decode": round(one["images_per_cpu_s"] / ref["images_per_cpu_s"], 3)}
    result["import_all_cores"] = all_ | {"scaling": round(all_["images_per_s"] / one["images_per_s"], 2)}
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
