"""Seeded, class-stratified, group-preserving train/val/test splits of imported images.

Each labeled image belongs to a **group**: the images a ``group`` column names together (the same
object, patient, camera or day), or a group of its own. A group goes to one split as a whole, as the
renderer keeps all images of a shape in one split, so no object is trained on and tested on.

Stratification works per class: a group counts for its majority class (ties: the smaller class id);
the groups of a class are put in a seeded order and taken, in that order, into test until the class has
``round(test_frac * n)`` test images (at least one), then into val the same way, and the rest into
train. Groups whose split is given (a CSV ``split`` column) keep it and are left out of the draw.

Unlabeled images (label -1) go to the pretraining pool (split ``unlabeled``). One whose group has
labeled images in val or test would let pretraining see an evaluated object, so it is marked for
leaving out (:data:`LEFT_OUT`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from selfstudy.data.store import SPLITS
from selfstudy.errors import UserError

TRAIN, VAL, TEST, UNLABELED = SPLITS["train"], SPLITS["val"], SPLITS["test"], SPLITS["unlabeled"]
#: Split code of an unlabeled image left out because its group is in val or test (never stored).
LEFT_OUT = 255
_SPLIT_STREAM = 0x5917


def assign_splits(labels: np.ndarray, groups: Sequence[str | None], given: np.ndarray,
                  val_frac: float, test_frac: float, seed: int,
                  class_names: Sequence[str] | None = None) -> np.ndarray:
    """Split code (``SPLITS`` values, or :data:`LEFT_OUT`) of every image.

    Args:
        labels: (N,) int class ids, -1 for unlabeled images.
        groups: N group names, None for an image that is a group of its own.
        given: (N,) int split codes from the input (-1: draw one); unlabeled images must have -1.
        val_frac, test_frac: shares of each class's images for val and test, each in (0, 1).
        seed: non-negative int; the same inputs and seed give the same splits.
        class_names: names for error messages (default: the ids).

    Returns:
        (N,) uint8 split codes.

    Raises:
        UserError: a group is given two different splits, or a class has too few images (groups) to
        give train, val and test one each.
    """
    labels = np.asarray(labels, dtype=np.int64)
    given = np.asarray(given, dtype=np.int64)
    n = len(labels)
    if len(groups) != n or len(given) != n:
        raise ValueError("labels, groups and given need one entry per image")
    if not (0 < val_frac < 1 and 0 < test_frac < 1 and val_frac + test_frac < 1):
        raise UserError(f"--val-frac {val_frac} and --test-frac {test_frac} are not allowed; each must be "
                        f"in (0, 1) and together below 1 (finetuning needs train, val and test images)")
    name = (lambda c: str(class_names[c])) if class_names is not None else str

    # Group key of every image: its group name, or its own row.
    keys = [("g", g) if g is not None else ("r", i) for i, g in enumerate(groups)]
    members: dict[tuple, list[int]] = {}
    for i, k in enumerate(keys):
        members.setdefault(k, []).append(i)

    out = np.full(n, LEFT_OUT, dtype=np.uint8)
    draw: dict[int, list[tuple]] = {}  # class -> its groups without a given split
    for key, rows in members.items():
        rows_arr = np.asarray(rows)
        lab = labels[rows_arr]
        fixed = sorted({int(s) for s in given[rows_arr][lab >= 0] if s >= 0})
        if len(fixed) > 1:
            where = f"group {key[1]!r}" if key[0] == "g" else f"image {rows[0]}"
            inv = {v: k for k, v in SPLITS.items()}
            raise UserError(f"{where} is given the splits {', '.join(inv[s] for s in fixed)}; a group's images "
                            f"must all be in one split (fix the split column or the group column)")
        labeled = lab[lab >= 0]
        if not len(labeled):
            continue  # only unlabeled images: the pool
        if fixed:
            out[rows_arr[lab >= 0]] = fixed[0]
            continue
        if len(labeled) == 1:  # the common case, an image of its own
            majority = int(labeled[0])
        else:
            values, counts = np.unique(labeled, return_counts=True)
            majority = int(values[np.argmax(counts)])  # argmax: the first (smallest class) on ties
        draw.setdefault(majority, []).append(key)

    for c in sorted(draw):
        gkeys = sorted(draw[c], key=lambda k: (k[0], str(k[1])) if k[0] == "g" else (k[0], k[1]))
        order = np.random.default_rng([_SPLIT_STREAM, int(seed), int(c)]).permutation(len(gkeys))
        sizes = [int((labels[members[gkeys[j]]] >= 0).sum()) for j in order]
        total = sum(sizes)
        want = {TEST: max(1, _round(test_frac * total)), VAL: max(1, _round(val_frac * total))}
        have = {TEST: 0, VAL: 0}
        for j, size in zip(order, sizes):
            target = next((s for s in (TEST, VAL) if have[s] < want[s]), TRAIN)
            if target != TRAIN:
                have[target] += size
            rows_arr = np.asarray(members[gkeys[j]])
            out[rows_arr[labels[rows_arr] >= 0]] = target

    # Every class that is drawn needs all three splits; every class needs training images.
    for c in np.unique(labels[labels >= 0]):
        got = out[labels == c]
        counts = {s: int((got == s).sum()) for s in (TRAIN, VAL, TEST)}
        need = (TRAIN, VAL, TEST) if int(c) in draw else (TRAIN,)
        if any(counts[s] == 0 for s in need):
            n_c = int((labels == c).sum())
            n_groups = len({keys[i] for i in np.flatnonzero(labels == c)})
            unit = f"{n_c} labeled image(s)" + (f" in {n_groups} group(s)" if n_groups != n_c else "")
            if need == (TRAIN,):
                raise UserError(f"class {name(int(c))!r} has no training images (its {unit} are all given "
                                f"the val or test split); put some of them in train")
            raise UserError(f"class {name(int(c))!r} has {unit}: too few for the splits (one each at least "
                            f"for train, val and test at --val-frac {val_frac:g} --test-frac {test_frac:g}); "
                            f"add images of it, leave the class out, or give its splits in a CSV split column")

    # Unlabeled images: the pool, unless their group is evaluated.
    for key, rows in members.items():
        if key[0] == "r" and labels[rows[0]] >= 0:
            continue  # a labeled image of its own
        rows_arr = np.asarray(rows)
        unl = rows_arr[labels[rows_arr] < 0]
        if not len(unl):
            continue
        lab_splits = out[rows_arr[labels[rows_arr] >= 0]]
        evaluated = bool(np.isin(lab_splits, (VAL, TEST)).any())
        out[unl] = LEFT_OUT if evaluated else UNLABELED
    return out


def _round(x: float) -> int:
    """Round half up (Python's round() rounds half to even, which would make 2.5 -> 2 but 3.5 -> 4)."""
    return int(math.floor(x + 0.5))
