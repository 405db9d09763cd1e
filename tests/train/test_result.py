"""The downstream result: one dataclass for every protocol, stored as the dict of today's keys."""

import dataclasses
import json

import pytest

from selfstudy.train.result import DownstreamResult, prefixed, scores

#: The keys the study database and the report read, in the order every protocol wrote them by hand.
KEYS = ["metric", "higher_is_better", "val", "test", "val_last", "test_last", "still_improving", "steps",
        "seconds", "metrics", "subset_sha", "subset_indices", "budget", "protocol", "task", "backbone",
        "method", "n_labels", "seed", "best_step", "stopped_early", "curve"]


def example(**kw) -> DownstreamResult:
    values = dict(metric="accuracy", higher_is_better=True, val=0.5, test=0.4, val_last=0.45, test_last=0.39,
                  still_improving=False, steps=100, seconds=1.5, metrics={"val/accuracy": 0.5},
                  subset_sha="abc", subset_indices=[3, 1, 2], budget={"lr": 1e-3}, protocol="scratch",
                  task="classification", backbone="resnet9-tiny", method=None, n_labels=3, seed=0,
                  best_step=80, stopped_early=True, curve=[[80, 0.5], [100, 0.45]])
    values.update(kw)
    return DownstreamResult(**values)


def test_to_dict_gives_todays_keys_in_order_and_reads_back():
    r = example()
    d = r.to_dict()
    assert list(d) == KEYS and [f.name for f in dataclasses.fields(DownstreamResult)] == KEYS
    assert DownstreamResult(**json.loads(json.dumps(d))) == r


def test_reads_like_the_dict_it_replaced():
    r = example()
    assert r["test"] == 0.4 and r.test == 0.4 and dict(r) == r.to_dict() and len(r) == len(KEYS)
    assert "budget" in r and "nope" not in r and r.get("nope") is None
    with pytest.raises(KeyError):
        r["nope"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.test = 1.0


def test_scores_prefix_each_split_in_order():
    assert prefixed("val", {"accuracy": 1}) == {"val/accuracy": 1.0}
    got = scores(val={"accuracy": 0.5, "loss": 1.0}, test={"accuracy": 0.25})
    assert got == {"val/accuracy": 0.5, "val/loss": 1.0, "test/accuracy": 0.25}
    assert list(got) == ["val/accuracy", "val/loss", "test/accuracy"]
