"""``selfstudy probe``: a linear probe or k-NN on frozen features of an encoder."""

from __future__ import annotations

import argparse

from selfstudy.cli.finetune import add_common, emit, open_args_data

EPILOG = """\
examples:
  selfstudy probe --data TCVL --res 32 --init runs/rot/final.pt --task classification --labels 1000
      linear probe on the frozen Rotation encoder's features of 1,000 labeled images
  selfstudy probe --data TCVL --res 32 --init runs/rot/final.pt --labels 1000 --knn k=50
      weighted k-NN (cosine) on the same features
  selfstudy probe --data TCVL --res 32 --backbone resnet9-tiny --labels 1000
      the random-encoder baseline (no --init)

options go last, as key=value: steps (300), batch_size (4096), lr (1e-2), final_lr (0),
weight_decays ([0,1e-4,1e-3,1e-2,1e-1]; chosen on validation), eval_every (25), val_size (1000),
test_size (all), feature_batch, k (20), temperature (0.07).
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "probe", help="linear probe or k-NN on frozen features",
        description="Extract frozen features once (no augmentation) and fit a linear head with its weight "
                    "decay chosen on validation, or vote with k-NN; report the test metric.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    p.add_argument("--knn", action="store_true", help="k-nearest-neighbour vote instead of a linear head")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="probe options (see below)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from selfstudy.errors import UserError
    from selfstudy.tasks import CategoricalTask, get_task
    from selfstudy.train import probe
    from selfstudy.train.budget import ProbeBudget
    from selfstudy.train.model import resolve_init

    task = get_task(args.task)
    budget = ProbeBudget.from_overrides(args.overrides)
    if args.labels <= 0:
        raise UserError(f"--labels {args.labels} is not allowed; it must be a positive number of images")
    if args.knn and not isinstance(task, CategoricalTask):
        raise UserError(f"--knn votes for classes; task {task.spec!r} is not a classification task "
                        f"(allowed: classification, pose)")
    init, backbone = resolve_init(args.init, args.backbone)
    ds = open_args_data(args)
    fn = probe.knn if args.knn else probe.linear
    result = fn(ds, task, init=init, n_labels=args.labels, seed=args.seed, backbone=backbone, budget=budget,
                device=args.device, precision=args.precision, channels_last=args.channels_last,
                space=args.space)
    emit(args, result.to_dict())
    return 0
