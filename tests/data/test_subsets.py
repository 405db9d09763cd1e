import numpy as np
import pytest

from selfstudy.data.subsets import class_counts, nested_balanced, subset_sha
from selfstudy.errors import UserError


def make_labels(per_class=(50,) * 10, seed=0):
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)])
    return np.random.default_rng(seed).permutation(labels)


def test_exact_class_balance_and_remainder():
    labels = make_labels()
    sets = nested_balanced(labels, [100, 37, 10], seed=3)
    for n, idx in sets.items():
        assert len(idx) == n and len(np.unique(idx)) == n
        assert np.all(np.diff(idx) > 0)  # sorted, unique
        counts = np.bincount(labels[idx], minlength=10)
        assert counts.sum() == n and counts.max() - counts.min() <= (1 if n % 10 else 0)
    assert np.all(np.bincount(labels[sets[100]], minlength=10) == 10)
    c37 = np.bincount(labels[sets[37]], minlength=10)
    assert sorted(c37.tolist()) == [3] * 3 + [4] * 7


def test_nested_for_every_pair_of_counts():
    labels = make_labels()
    counts = [10, 13, 25, 99, 100, 250, 500]
    sets = nested_balanced(labels, counts, seed=7)
    for a, b in zip(counts, counts[1:]):
        assert set(sets[a]) <= set(sets[b])


def test_seed_stable_whatever_else_is_requested():
    labels = make_labels()
    alone = nested_balanced(labels, [100], seed=5)[100]
    together = nested_balanced(labels, [300, 100, 20], seed=5)[100]
    assert np.array_equal(alone, together)
    other_seed = nested_balanced(labels, [100], seed=6)[100]
    assert not np.array_equal(alone, other_seed)
    assert subset_sha(alone) == subset_sha(together[::-1]) != subset_sha(other_seed)
    assert len(subset_sha(alone)) == 16


def test_remainder_never_shrinks_a_class():
    classes = np.arange(10)
    for seed in range(5):
        prev = class_counts(0, classes, seed)
        for n in range(1, 60):
            cur = class_counts(n, classes, seed)
            assert sum(cur.values()) == n
            assert all(cur[c] >= prev[c] for c in cur)
            prev = cur


def test_errors_name_the_split_size():
    labels = make_labels()  # 500 images, 50 per class
    with pytest.raises(UserError, match="500 images"):
        nested_balanced(labels, [501], seed=0)
    with pytest.raises(UserError, match="positive"):
        nested_balanced(labels, [0], seed=0)
    with pytest.raises(UserError, match="positive"):
        nested_balanced(labels, [-5], seed=0)
    with pytest.raises(UserError, match="non-negative"):
        nested_balanced(labels, [10], seed=-1)
    skewed = make_labels((5,) + (50,) * 9)  # class 0 has only 5 images
    with pytest.raises(UserError, match=r"class 0.*only 5.*at most 50 labels"):
        nested_balanced(skewed, [100], seed=0)
    assert len(nested_balanced(skewed, [50], seed=0)[50]) == 50
    assert nested_balanced(labels, [], seed=0) == {}
