"""How much does a test score move between two draws of object shapes? (docs/RESULTS.md §8)

The renderer draws each class's shapes from ``models_per_class`` procedural models, split 10/1/1 into
train/val/test. With few models per class a test score depends on which few test shapes were drawn;
this script measures that spread: for each ``models_per_class`` it renders datasets that differ only in
their seed (another draw of shapes, colours and views), trains the same scratch model on each (fixed
budget, fixed training seed) and prints the test and validation scores per draw and their spread.

Every image is its own draw of a shape (``reuse=1``), so a small dataset's test split holds many shape
draws per class, as the paper-sized datasets do (40k test images in groups of 10: 400 per class).

    .venv/bin/python scripts/shape_spread.py                 # ~4 min on 2 idle cores
    .venv/bin/python scripts/shape_spread.py --models 240 2400 --draws 0 1 2 --labels 1000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="example: .venv/bin/python scripts/shape_spread.py --models 240 2400")
    p.add_argument("--factors", default="-CV-", help="dataset factors (default -CV-)")
    p.add_argument("--models", type=int, nargs="+", default=[240, 2400], help="models per class to compare")
    p.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2], help="dataset seeds (shape draws)")
    p.add_argument("--labels", type=int, default=1000, help="labeled training images (default 1000)")
    p.add_argument("--n", type=int, default=12000, help="images per dataset (default 12000)")
    p.add_argument("--steps", type=int, default=1000, help="finetune steps, batch 64 (default 1000)")
    args = p.parse_args(argv)

    from selfstudy.data.generate import DatasetConfig, ensure_dataset
    from selfstudy.data.store import open_dataset
    from selfstudy.train.budget import Budget
    from selfstudy.train.finetune import run

    budget = Budget.from_overrides(dict(epochs=1, min_steps=args.steps, max_steps=args.steps, batch_size=64,
                                        lr=3e-3, evals=5, patience=0, val_size=0))
    out = {}
    for mpc in args.models:
        for draw in args.draws:
            t = time.perf_counter()
            cfg = DatasetConfig(factors=args.factors, n=args.n, res=32, seed=draw, models_per_class=mpc,
                                reuse=1)
            ds = open_dataset(ensure_dataset(cfg, progress=False))
            r = run(ds, "classification", backbone="resnet9-tiny", n_labels=args.labels, seed=0, budget=budget,
                    precision="bf16", channels_last=True)
            out[(mpc, draw)] = (r.val, r.test)
            print(json.dumps({"models_per_class": mpc, "draw": draw, "val": round(r.val, 4),
                              "test": round(r.test, 4), "seconds": round(time.perf_counter() - t, 1)}), flush=True)
    for mpc in args.models:
        tests = [out[(mpc, d)][1] for d in args.draws]
        gaps = [out[(mpc, d)][0] - out[(mpc, d)][1] for d in args.draws]
        print(json.dumps({"models_per_class": mpc, "test_mean": round(statistics.mean(tests), 4),
                          "test_sd_over_draws": round(statistics.stdev(tests), 4) if len(tests) > 1 else None,
                          "test_range": round(max(tests) - min(tests), 4),
                          "mean_abs_val_minus_test": round(statistics.mean(abs(g) for g in gaps), 4)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
