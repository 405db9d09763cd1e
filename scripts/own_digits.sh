#!/usr/bin/env bash
# The `own` study end to end on real labeled images: scikit-learn's 1,797 handwritten digits (they ship
# inside scikit-learn, nothing is downloaded), up-sampled from 8x8 to 32 px and written as PNG files in
# the class-folder layout, imported with `selfstudy data import`, then `selfstudy study run own`.
# docs/RESULTS.md §4 records a run of it (commands, wall time, the printed summary).
#
#   scripts/own_digits.sh [WORK_DIR] [override ...]     # default WORK_DIR: studies/own-digits-work
#
# Extra arguments go to `selfstudy study run own`: spec overrides and options. Rerunning resumes (finished
# cells are kept), so a run can grow: the §4 run on the 2-core CPU was scratch vs SimCLR only, budget
# checks at 224 labels only, first at 40/95/224 labels, then at all five automatic counts:
#   M='methods={scratch: {}, simclr: {epochs: 30, overrides: {batch_size: 128, lr: 4.0e-3, warmup_epochs: 2}}}'
#   scripts/own_digits.sh /tmp/owndig "$M" 'labels=[40,95,224]' 'budget_check.labels=[224]' budget_check.cap=2 --workers 2
#   scripts/own_digits.sh /tmp/owndig "$M" 'budget_check.labels=[224]' budget_check.cap=2 --workers 2
# With no arguments it runs the whole preset (SimCLR and VICReg, budget checks at every count): on a GPU.
# Needs scikit-learn in the environment (pip install scikit-learn).
set -euo pipefail
WORK=${1:-studies/own-digits-work}
shift || true
PY=${PYTHON:-.venv/bin/python}
SELFSTUDY=${SELFSTUDY:-.venv/bin/selfstudy}

mkdir -p "$WORK"
if [ ! -d "$WORK/digits" ]; then
  "$PY" - "$WORK/digits" <<'PY'
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

out = Path(sys.argv[1])
tmp = out.with_name(out.name + ".partial")
digits = load_digits()
for i, (img, y) in enumerate(zip(digits.images, digits.target)):
    d = tmp / str(y)
    d.mkdir(parents=True, exist_ok=True)
    # 0..16 ink -> 0..255 grey, 8x8 -> 32x32 bicubic
    Image.fromarray((img * (255 / 16)).astype(np.uint8), "L").resize((32, 32), Image.BICUBIC).save(d / f"{i:04d}.png")
tmp.rename(out)
print(f"wrote {len(digits.images)} PNG files in {len(set(digits.target))} class folders under {out}")
PY
fi
[ -d "$WORK/ds" ] || "$SELFSTUDY" data import "$WORK/digits" --out "$WORK/ds" --res 32 --no-progress
"$SELFSTUDY" data info "$WORK/ds" | head -20
time "$SELFSTUDY" study run own --data "$WORK/ds" --dir "$WORK/study" "$@"
