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
    assert nested_balanced(labels, [], seed=0) == {}


def _old_nested_balanced(labels, n, seed):
    """The balanced subsets as nested_balanced drew them before imbalanced data was allowed (a copy of
    that code), to check that balanced data gives the very same indices."""
    classes = np.unique(labels)
    order = np.random.default_rng([0x5B5E7, seed, 1]).permutation(len(classes))
    q, r = divmod(n, len(classes))
    want = {int(c): q for c in classes}
    for rank in order[:r]:
        want[int(classes[rank])] += 1
    parts = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        rng = np.random.default_rng([0x5B5E7, seed, 2, int(c) & 0xFFFFFFFF])
        parts.append(idx[rng.permutation(len(idx))][:want[int(c)]])
    return np.sort(np.concatenate(parts))


def test_balanced_data_gives_the_same_indices_as_before():
    rng = np.random.default_rng(11)
    for seed in range(4):
        labels = rng.permutation(make_labels((30, 31, 29, 40, 30, 33, 30, 35, 30, 32)))
        for n in (1, 7, 10, 99, 250, 290):  # every class has >= its share at these counts
            assert np.array_equal(nested_balanced(labels, [n], seed)[n], _old_nested_balanced(labels, n, seed))


def test_a_small_class_gives_all_it_has_and_the_rest_stay_balanced():
    skewed = make_labels((5,) + (50,) * 9)  # class 0 has only 5 images
    sets = nested_balanced(skewed, [20, 50, 100, 455], seed=0)
    counts = {n: np.bincount(skewed[s], minlength=10) for n, s in sets.items()}
    assert counts[20].tolist().count(2) == 10  # 2 each: no cap binds yet
    assert counts[50].tolist() == [5] * 10     # 5 each: class 0 exactly used up
    assert counts[100][0] == 5 and sorted(counts[100][1:].tolist()) == [10] * 4 + [11] * 5  # 95 over 9
    assert counts[455].tolist() == [5] + [50] * 9  # the whole split
    for small, large in ((20, 50), (50, 100), (100, 455)):
        assert np.isin(sets[small], sets[large]).all()  # nested


def test_imbalanced_subsets_are_nested_for_every_count():
    labels = make_labels((3, 120, 8, 40))  # defect-inspection style: one big class, rare others
    prev = np.array([], dtype=np.int64)
    for n in range(1, len(labels) + 1):
        cur = nested_balanced(labels, [n], seed=2)[n]
        assert len(cur) == n and len(np.unique(cur)) == n
        assert np.isin(prev, cur).all()
        sizes = np.bincount(labels[cur], minlength=4)
        # Balanced where possible: a class below the largest count has given every image it has.
        full = np.bincount(labels, minlength=4)
        assert all(sizes[c] >= sizes.max() - 1 or sizes[c] == full[c] for c in range(4))
        prev = cur


def test_capped_class_counts_match_a_round_robin_deal():
    sizes = np.array([2, 9, 4, 1, 7])
    classes = np.array([3, 5, 6, 8, 9])
    order = np.random.default_rng([0x5B5E7, 4, 1]).permutation(5)
    deal, left = [], sizes.copy()
    while left.sum():
        for rank in order:
            if left[rank]:
                deal.append(int(classes[rank]))
                left[rank] -= 1
    for n in range(sizes.sum() + 1):
        want = {int(c): deal[:n].count(int(c)) for c in classes}
        assert class_counts(n, classes, 4, sizes) == want
