"""Labeled subsets: nested, class-balanced, fixed by a seed.

A label-count sweep must compare like with like, so the subsets it trains on are

- **class-balanced**: ``n`` labels give every class ``n // C`` images; the ``n % C`` left over go one
  each to the first classes of a seeded class order (the same order for every ``n``);
- **stratified when a class is too small to balance** (imbalanced data, as in defect inspection): a
  class that has fewer images than its share gives all it has, and the others share the rest the same
  way. Equivalently, labels are dealt one at a time, round after round, over the seeded class order,
  skipping a class once it is used up; a subset is a prefix of that deal, so it stays nested, and on
  data where no class runs out it is exactly the balanced subset above (the same indices);
- **nested**: each class has one seeded permutation of its images and every subset takes a prefix of
  it, so the 100-label set lies inside the 1,000-label set (more labels only ever *add* images);
- **seed-stable**: a set depends only on ``(labels, n, seed)``, not on which other counts were asked for.

The paper took the first ``n`` shuffled training images instead (docs/PAPER.md §6.3), which is neither
balanced nor, across shuffles, nested.

Multi-object scenes have no per-image class (``label`` -1) to balance; :func:`nested_random` gives them
subsets that are nested and seed-stable, drawn uniformly.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np

from selfstudy.errors import UserError

# Mixed into every seed so that subset draws never coincide with other seeded draws of the same seed.
_SUBSET_STREAM = 0x5B5E7


def class_counts(n: int, classes: np.ndarray, seed: int, sizes: np.ndarray | None = None) -> dict[int, int]:
    """How many of ``n`` labels each class gets: ``n // C`` each, the remainder one each to the first
    ``n % C`` classes of a seeded order of ``classes``. The order does not depend on ``n``, so the
    count of every class never decreases as ``n`` grows (which nesting needs).

    ``sizes`` (images of each class, aligned with ``classes``) caps every class at its size: the
    labels are dealt round-robin over the seeded order, skipping used-up classes, i.e. every class gets
    ``min(size, L)`` for the largest level ``L`` that fits in ``n``, and what is left goes one each to the
    first classes of the order that still have images. Without a cap that binds, the counts are the
    uncapped ones. ``n`` must not exceed ``sum(sizes)``.
    """
    classes = np.asarray(classes)
    order = np.random.default_rng([_SUBSET_STREAM, seed, 1]).permutation(len(classes))
    if sizes is None:
        q, r = divmod(int(n), len(classes))
        counts = {int(c): q for c in classes}
        for rank in order[:r]:
            counts[int(classes[rank])] += 1
        return counts
    sizes = np.asarray(sizes, dtype=np.int64)
    if len(sizes) != len(classes) or int(n) > int(sizes.sum()):
        raise ValueError(f"class_counts: {n} labels from classes of sizes {sizes.tolist()}")
    lo, hi = 0, int(sizes.max(initial=0))
    while lo < hi:  # the largest level L with sum(min(sizes, L)) <= n
        mid = (lo + hi + 1) // 2
        if int(np.minimum(sizes, mid).sum()) <= n:
            lo = mid
        else:
            hi = mid - 1
    take = np.minimum(sizes, lo)
    rest = int(n) - int(take.sum())
    take[[rank for rank in order if sizes[rank] > lo][:rest]] += 1
    return {int(c): int(k) for c, k in zip(classes, take)}


def _checked_counts(counts: Iterable[int], seed, n_items: int, split: str) -> list[int]:
    """``counts`` as a list, after checking the seed (an int >= 0) and every count (an int in
    1..n_items); raises :class:`UserError` naming what is wrong and what is allowed."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"subset seed must be a non-negative integer, got {seed!r}")
    counts = list(counts)
    for n in counts:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise UserError(f"label count {n!r} is not allowed; a label count is a positive integer "
                            f"(at most the {split} split's {n_items} images)")
        if n > n_items:
            raise UserError(f"label count {n} is larger than the {split} split, which has {n_items} "
                            f"images; allowed: 1..{n_items}")
    return counts


def nested_balanced(labels: np.ndarray, counts: Iterable[int], seed: int,
                    split: str = "train") -> dict[int, np.ndarray]:
    """Nested, class-balanced subsets of ``labels`` for every label count in ``counts``; where a class
    has fewer images than its balanced share, it gives all of them and the other classes share the rest
    (see :func:`class_counts`), so the subsets stay nested and stratified on imbalanced data too.

    Args:
        labels: (N,) int class of every image of the split (e.g. the train split's ``label``).
        counts: label counts ``n``; each must be in ``1 .. N``.
        seed: non-negative int; the same seed gives the same sets for any other ``counts``.
        split: the split's name, only for error messages.

    Returns:
        ``{n: indices}``: sorted int64 positions into ``labels`` (not dataset indices), ``n`` of them.

    Raises:
        UserError: a count is not a positive int or exceeds the split; the seed is not a non-negative int.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise UserError(f"subset labels must be one label per image, got shape {labels.shape}")
    counts = _checked_counts(counts, seed, len(labels), split)
    if not counts:
        return {}
    classes, sizes = np.unique(labels, return_counts=True)
    # One permutation per class, drawn from (seed, class) alone: prefixes of it give the nesting, and
    # no other class or count can shift it.
    members = {}
    for c in classes:
        idx = np.flatnonzero(labels == c)
        rng = np.random.default_rng([_SUBSET_STREAM, seed, 2, int(c) & 0xFFFFFFFF])
        members[int(c)] = idx[rng.permutation(len(idx))]
    out = {}
    for n in counts:
        want = class_counts(n, classes, seed, sizes)
        parts = [members[c][:k] for c, k in want.items()]
        out[int(n)] = np.sort(np.concatenate(parts)).astype(np.int64)
    return out


def nested_random(n_items: int, counts: Iterable[int], seed: int,
                  split: str = "train") -> dict[int, np.ndarray]:
    """Nested random subsets of ``n_items`` images for every label count in ``counts``, for data with no
    per-image class to balance (multi-object scenes, whose ``label`` is -1).

    One seeded permutation of ``range(n_items)``; the subset of ``n`` labels is its first ``n`` entries,
    so subsets are nested and depend only on ``(n_items, n, seed)``.

    Returns:
        ``{n: indices}``: sorted int64 positions in ``0 .. n_items - 1``, ``n`` of them.

    Raises:
        UserError: a count is not a positive int or exceeds ``n_items``; the seed is not a non-negative int.
    """
    counts = _checked_counts(counts, seed, n_items, split)
    # Stream 3: distinct from nested_balanced's draws (1: class order, 2: per-class permutations).
    order = np.random.default_rng([_SUBSET_STREAM, seed, 3]).permutation(int(n_items))
    return {int(n): np.sort(order[:n]).astype(np.int64) for n in counts}


def subset_sha(indices: np.ndarray) -> str:
    """A short fingerprint (16 hex chars of sha256) of a set of indices, order-insensitive."""
    arr = np.sort(np.asarray(indices, dtype=np.int64).ravel())
    return hashlib.sha256(arr.astype("<i8").tobytes()).hexdigest()[:16]
