"""``selfstudy finetune``: finetune a pretrained encoder (or train from scratch) on a labeled subset."""

from __future__ import annotations

import argparse
import json

EPILOG = """\
examples:
  selfstudy finetune --data TCVL --res 32 --task classification --labels 1000 --backbone resnet9-tiny
      train from scratch on 1,000 labels of a TCVL dataset (rendered once at 32 px, then reused)
  selfstudy finetune --data TCVL --res 32 --task classification --labels 1000 --init runs/rot/final.pt
      the same, starting from a pretrained encoder (its backbone and input normalisation)
  selfstudy finetune --data data/datasets/TCVL-1a2b3c --task pose --labels 300 --init runs/cmc \\
      --precision bf16 --channels-last max_steps=8000 patience=12 --out results/cmc-pose-300.json
  selfstudy finetune --data TCVL+multi --res 64 --task segmentation --labels 500 --init runs/simclr
      semantic segmentation on scenes of four objects (mIoU; depth: AbsRel, lower is better)

budget options go last, as key=value: epochs (passes over the labels, 200), min_steps (500),
max_steps (10000), batch_size (128), evals (25), eval_every, patience (8), min_fraction (0.5),
min_delta, late_fraction (0.2), val_size (1000), test_size (all), eval_batch, lr (1e-3), final_lr,
weight_decay (1e-4), warmup_fraction (0.05).
Planned steps = clamp(ceil(epochs * labels / batch_size), min_steps, max_steps); the run stops early
after `patience` validation evaluations without improvement (not before min_fraction of the plan). The
reported test number is at the best validation evaluation; a run whose validation was still rising at
the end of its budget is flagged (still_improving).
tasks: classification, pose (5-way, needs V=1 data), pose-regression (angular error, needs V=1),
segmentation, depth (per-pixel: on single-object data or on scenes of several objects, +multi).
"""


def add_common(p: argparse.ArgumentParser) -> None:
    """Arguments finetune and probe share."""
    p.add_argument("--data", required=True,
                   help="a dataset folder, or a factor string (TCVL, -CV-, 0110) to render or reuse; "
                        "TCVL+multi for scenes of several objects (segmentation, depth)")
    p.add_argument("--task", default="classification",
                   help="classification, pose, pose-regression, or with arguments, e.g. "
                        "'pose-regression(within=15)' (default: %(default)s)")
    p.add_argument("--labels", type=int, required=True, help="labeled training images (class-balanced)")
    p.add_argument("--init", "--pretrained", dest="init", default=None, metavar="CHECKPOINT",
                   help="final.pt of `selfstudy pretrain` (or its run folder)")
    p.add_argument("--backbone", default=None,
                   help="backbone name; must match the checkpoint's (default: the checkpoint's, or "
                        "resnet9 without one)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the labeled subset, the initialisation and the batches (default: %(default)s)")
    p.add_argument("--res", type=int, default=None,
                   help="input resolution in pixels: what to render for a factor string; for a folder it "
                        "must match (default: the dataset's)")
    p.add_argument("--num-images", type=int, default=None, help="images to render for a factor string")
    p.add_argument("--space", choices=("rgb", "lab"), default=None,
                   help="input colour space from scratch (default: rgb; with --init, the checkpoint's)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="fp32, bf16 autocast, or fp16 (CUDA) (default: %(default)s)")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    p.add_argument("--out", default=None, metavar="RESULT.json", help="also write the result as JSON")
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune", help="finetune a pretrained encoder, or train from scratch, on a labeled subset",
        description="Train every layer plus a fresh linear head on a nested, class-balanced labeled "
                    "subset, from a pretrained encoder (--init) or from scratch, with the same recipe; "
                    "select on the validation split and report the test metric.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    p.add_argument("--no-augment", action="store_true", help="turn the paper's augmentation off")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="budget options (see below)")
    p.set_defaults(func=run)


def summary(r: dict) -> str:
    """One human line for a downstream result (two when the budget was too short)."""
    what = r["protocol"] if r.get("method") is None else f"{r['protocol']} {r['method']}"
    line = (f"{what} {r['task']} n={r['n_labels']} seed={r['seed']} {r['backbone']}: "
            f"test {r['metric']} {r['test']:.4f} (val {r['val']:.4f}")
    b = r.get("budget", {})
    if r["protocol"] == "linear":
        line += f" with weight decay {b.get('weight_decay', 0):g} at step {r['best_step']}"
    elif r["steps"]:
        line += f" at step {r['best_step']}"
        if r.get("stopped_early"):
            line += f"; stopped early at step {r['steps']} of {b.get('planned_steps', r['steps'])}"
        else:
            line += f" of {r['steps']}"
    if r["protocol"] != "knn":
        line += f"; last: val {r['val_last']:.4f} test {r['test_last']:.4f}"
    line += f") in {r['seconds']:.1f} s"
    if r.get("still_improving"):
        line += ("\nwarning: validation was still improving when the budget ran out; this number is not "
                 "converged (raise epochs/max_steps)")
    return line


def emit(args: argparse.Namespace, result: dict) -> None:
    """Print the result and write ``--out``."""
    text = json.dumps(result, indent=2, sort_keys=True, default=_plain)
    if args.out:
        from pathlib import Path

        from selfstudy.core.io import atomic_write_text

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, text + "\n")
    print(text if args.json else summary(result))


def _plain(v):
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)


def open_args_data(args: argparse.Namespace):
    from selfstudy.train.inputs import open_data

    return open_data(args.data, res=args.res, n=args.num_images, progress=not args.no_progress)


def run(args: argparse.Namespace) -> int:
    from selfstudy.tasks import get_task
    from selfstudy.train.budget import Budget
    from selfstudy.train.finetune import run as finetune
    from selfstudy.train.model import resolve_init

    # Everything a user can get wrong is checked before any dataset is rendered or loaded.
    task = get_task(args.task)
    budget = Budget.from_overrides(args.overrides)
    if args.labels <= 0:
        from selfstudy.errors import UserError

        raise UserError(f"--labels {args.labels} is not allowed; it must be a positive number of images")
    init, backbone = resolve_init(args.init, args.backbone)
    ds = open_args_data(args)
    result = finetune(ds, task, backbone=backbone, n_labels=args.labels, seed=args.seed, init=init,
                      budget=budget, device=args.device, precision=args.precision,
                      channels_last=args.channels_last, space=args.space, augment=not args.no_augment,
                      progress=not args.no_progress)
    emit(args, result.to_dict())
    return 0
