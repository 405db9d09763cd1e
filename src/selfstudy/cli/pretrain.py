"""``selfstudy pretrain``: self-supervised pretraining of a backbone on a dataset."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  selfstudy pretrain --method rotation --data TCVL --backbone resnet9-tiny --res 32 --epochs 20 --out runs/rot
      render (or reuse) a TCVL dataset at 32 px and pretrain Rotation on it; rerun to resume
  selfstudy pretrain --method simclr --data data/datasets/TCVL-1a2b3c --backbone resnet9 --res 64 \\
      --epochs 100 --out runs/simclr --precision bf16 --channels-last temperature=0.2 batch_size=256
      method options and training options go last, as key=value
  torchrun --nproc_per_node 2 -m selfstudy pretrain --method cmc --data TCVL --backbone resnet9 \\
      --device cuda --epochs 100 --out runs/cmc
      the same on two GPUs (one process each); rank 0 writes the files

The run folder gets last.pt (resumable state), log.jsonl (one line per epoch, with the online
linear-probe accuracy) and final.pt (what `selfstudy finetune --pretrained` loads).
training options: steps, min_steps, max_steps, optimizer (adam|adamw|sgd), grad_clip, eps,
warmup_max_fraction, sgd_momentum, checkpoint_every, threads; method options: see each method's Config.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain", help="pretrain a backbone with a self-supervised method",
        description="Pretrain a backbone with a self-supervised method (the paper's rotation, vae, cmc, "
                    "amdim; simclr, moco, byol, barlow, vicreg) and write a checkpoint that finetuning "
                    "and probes load.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", required=True,
                   help="rotation, vae, cmc, amdim (the paper's), simclr, moco, byol, barlow or vicreg")
    p.add_argument("--data", required=True,
                   help="a dataset folder, or a factor string (TCVL, -CV-, 0110) to render or reuse; "
                        "TCVL+multi for scenes of several objects (segmentation, depth)")
    p.add_argument("--backbone", default="resnet9", help="resnet9, resnet9-tiny, resnet18, resnet50 ... "
                                                         "(default: %(default)s)")
    p.add_argument("--res", type=int, default=None,
                   help="input resolution in pixels (default: the dataset's)")
    p.add_argument("--epochs", type=int, default=None,
                   help="passes over the training split (default: the method's)")
    p.add_argument("--out", required=True, help="run folder; rerunning into it resumes")
    p.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    p.add_argument("--space", choices=("rgb", "lab"), default="rgb",
                   help="model input colour space (default: %(default)s; the paper used lab)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="fp32, bf16 autocast, or fp16 with loss scaling (CUDA) (default: %(default)s)")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    p.add_argument("--num-images", type=int, default=None,
                   help="images to render for a factor string, or to use from a folder's train split")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="method or training options, e.g. lr=1e-3 temperature=0.1 steps=500")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from selfstudy.train.pretrain import pretrain

    path = pretrain(args.data, args.method, args.backbone, res=args.res, epochs=args.epochs, out=args.out,
                    seed=args.seed, overrides=args.overrides, space=args.space, device=args.device,
                    precision=args.precision, channels_last=args.channels_last,
                    num_images=args.num_images, progress=not args.no_progress)
    from selfstudy.core import distributed

    if distributed.current().is_main:
        print(path)
    distributed.cleanup()
    return 0
