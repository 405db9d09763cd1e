"""Rendering throughput, end to end into the dataset store: render + labels + write + checksums.

Prints one JSON line: images per second of ``selfstudy.data.generate.generate`` (wall clock, including
worker start-up, OpenGL contexts, mesh building and the manifest's checksums) for single-object 64 px
and multi-object 128 px datasets (all factors on), with one process (``LP_NUM_THREADS=0``: llvmpipe
rasterises on the calling thread, so one core) and with one worker process per core, and the scaling
ratio (all cores / one process) measured in the same run. Each figure also comes as images per CPU
second, which drifts less than wall time when other work shares the machine; the one-process run is
repeated warm (context made, meshes built), the steady state of a long generation.

    .venv/bin/python benchmarks/render_throughput.py            # about a minute on 2 cores
    .venv/bin/python benchmarks/render_throughput.py --quick    # smaller datasets
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def _child(args) -> None:
    """Generate one dataset in this (fresh) process; print its timing as JSON."""
    from selfstudy.data.generate import DatasetConfig, generate

    cfg = DatasetConfig(factors="TCVL", n=args.n, res=args.res, multi=args.multi, seed=1,
                        models_per_class=args.models_per_class)
    timings = {}
    with tempfile.TemporaryDirectory(prefix="selfstudy-bench-") as tmp:
        # Cold: everything a fresh run pays. Warm (one process only): the same again in this process,
        # with its OpenGL context made and its meshes built, i.e. the steady state of a long run.
        for run in ("cold", "warm") if args.workers == 1 else ("cold",):
            cpu0, start = _cpu(), time.perf_counter()
            generate(cfg, os.path.join(tmp, run), workers=args.workers, progress=False)
            timings[run] = {"seconds": time.perf_counter() - start, "cpu_seconds": _cpu() - cpu0}
    print(json.dumps(timings))


def _cpu() -> float:
    """CPU seconds of this process and of its finished children."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _measure(n: int, res: int, multi: bool, workers: int, models_per_class: int) -> dict:
    env = dict(os.environ)
    if workers == 1:
        env["LP_NUM_THREADS"] = "0"
    cmd = [sys.executable, __file__, "--child", "--n", str(n), "--res", str(res), "--workers", str(workers),
           "--models-per-class", str(models_per_class)] + (["--multi"] if multi else [])
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    timings = json.loads(out.strip().splitlines()[-1])
    # Images per CPU second: what an idle core would do, steadier than wall time on a shared machine.
    result = {run: {"images_per_s": round(n / t["seconds"], 1),
                    "images_per_cpu_s": round(n / t["cpu_seconds"], 1)} for run, t in timings.items()}
    return result["cold"] | ({"warm": result["warm"]} if "warm" in result else {})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller datasets (noisier)")
    p.add_argument("--models-per-class", type=int, default=240)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--res", type=int, default=64, help=argparse.SUPPRESS)
    p.add_argument("--multi", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args)
        return

    from selfstudy.data.generate import default_workers
    from selfstudy.scene.render import Renderer

    cores = default_workers()
    scale = 0.25 if args.quick else 1.0
    result = {"benchmark": "render_throughput", "cores": cores, "factors": "TCVL",
              "models_per_class": args.models_per_class, "gl_renderer": None}
    for name, res, multi, n in (("single_64px", 64, False, 16000), ("multi_128px", 128, True, 3000)):
        n = max(1000, int(n * scale))
        one = _measure(n, res, multi, 1, args.models_per_class)
        all_ = _measure(n, res, multi, cores, args.models_per_class)
        result[name] = {"n": n, "one_process": one, "all_cores": all_,
                        "scaling": round(all_["images_per_s"] / one["images_per_s"], 2)}
    os.environ["LP_NUM_THREADS"] = "0"
    result["gl_renderer"] = Renderer(32, 1, batch=1).gl_renderer
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
