"""assign_splits: seeded, stratified per class, groups kept whole, unlabeled to the pool."""

import numpy as np
import pytest

from selfstudy.data.splits import LEFT_OUT, TEST, TRAIN, UNLABELED, VAL, assign_splits
from selfstudy.errors import UserError


def draw(labels, groups=None, given=None, val=0.15, test=0.15, seed=0):
    labels = np.asarray(labels)
    groups = groups if groups is not None else [None] * len(labels)
    given = np.asarray(given if given is not None else [-1] * len(labels))
    return assign_splits(labels, groups, given, val, test, seed, class_names=["a", "b", "c", "d"])


def test_each_class_is_split_by_its_own_fractions():
    labels = np.array([0] * 20 + [1] * 40 + [2] * 7)
    s = draw(labels)
    for c, (n_val, n_test) in {0: (3, 3), 1: (6, 6), 2: (1, 1)}.items():  # round half up, at least 1
        got = s[labels == c]
        assert (got == VAL).sum() == n_val and (got == TEST).sum() == n_test
        assert (got == TRAIN).sum() == (labels == c).sum() - n_val - n_test


def test_the_same_seed_gives_the_same_splits_and_another_seed_others():
    labels = np.repeat(np.arange(3), 30)
    assert np.array_equal(draw(labels, seed=4), draw(labels, seed=4))
    assert not np.array_equal(draw(labels, seed=4), draw(labels, seed=5))


def test_groups_stay_in_one_split():
    labels = np.repeat([0, 1], 60)
    groups = [f"obj{i // 3}" for i in range(120)]  # 40 objects of 3 images each
    s = draw(labels, groups, val=0.2, test=0.2)
    for g in set(groups):
        assert len({int(s[i]) for i in range(120) if groups[i] == g}) == 1
    for c in (0, 1):  # 20 objects per class: 4 test, 4 val (12 images each), 12 train
        got = s[labels == c]
        assert (got == TEST).sum() == 12 and (got == VAL).sum() == 12 and (got == TRAIN).sum() == 36


def test_given_splits_are_kept_and_spread_to_their_group():
    labels = np.array([0] * 10 + [1] * 10)
    groups = [None] * 20
    groups[0] = groups[1] = "x"
    given = [-1] * 20
    given[0] = TEST
    s = draw(labels, groups, given)
    assert s[0] == TEST and s[1] == TEST
    given[1] = VAL
    with pytest.raises(UserError, match="group 'x' is given the splits val, test"):
        draw(labels, groups, given)


def test_unlabeled_images_join_the_pool_unless_their_group_is_evaluated():
    labels = np.array([0] * 10 + [-1] * 3)
    groups = [f"g{i}" for i in range(10)] + ["g0", "g1", None]
    s = draw(labels, groups)
    for k, g in ((10, 0), (11, 1)):
        assert s[k] == (UNLABELED if s[g] == TRAIN else LEFT_OUT)
    assert s[12] == UNLABELED


def test_a_class_too_small_for_the_splits_is_named():
    labels = np.array([0] * 20 + [1] * 2)
    with pytest.raises(UserError, match=r"class 'b' has 2 labeled image\(s\): too few for the splits"):
        draw(labels)
    groups = [None] * 20 + ["same", "same"]
    labels = np.array([0] * 20 + [1] * 2)
    with pytest.raises(UserError, match=r"class 'b' has 2 labeled image\(s\) in 1 group\(s\)"):
        draw(labels, groups)


def test_bad_fractions_are_refused():
    with pytest.raises(UserError, match="together below 1"):
        draw([0] * 10, val=0.5, test=0.5)
