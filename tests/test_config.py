import pytest

from selfstudy.config import apply_overrides, merge, parse_override, parse_overrides, parse_value
from selfstudy.errors import UserError


@pytest.mark.parametrize("text, value", [
    ("3", 3),
    ("-2", -2),
    ("0.5", 0.5),
    ("1e-3", 0.001),        # YAML 1.1 would make this a string
    ("2E4", 20000.0),
    ("1.5e-2", 0.015),
    ("true", True),
    ("no", False),
    ("null", None),
    ("", None),
    ("lab", "lab"),
    ("'0110'", "0110"),
    ("[100, 1000]", [100, 1000]),
    ("[TCVL,0000]", ["TCVL", 0]),  # YAML's own reading; the spec gives the zeros back
    ("{epochs: 3, lr: 0.1}", {"epochs": 3, "lr": 0.1}),
    ("resnet9-tiny", "resnet9-tiny"),
])
def test_values_are_yaml_typed(text, value):
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def test_nested_keys_build_nested_dicts():
    out = parse_overrides(["methods.rotation.epochs=30", "methods.rotation.overrides.lr=5e-4",
                           "labels=[100,1000]", "space=lab"])
    assert out == {"methods": {"rotation": {"epochs": 30, "overrides": {"lr": 0.0005}}},
                   "labels": [100, 1000], "space": "lab"}


def test_later_override_wins_and_value_may_contain_equals():
    assert parse_overrides(["a=1", "a=2"]) == {"a": 2}
    assert parse_override("name=a=b") == (("name",), "a=b")


def test_apply_keeps_the_rest_and_does_not_mutate():
    base = {"finetune": {"lr": 0.001, "max_steps": 100}, "seeds": [0]}
    out = apply_overrides(base, ["finetune.max_steps=50", "seeds=[0,1]"])
    assert out == {"finetune": {"lr": 0.001, "max_steps": 50}, "seeds": [0, 1]}
    assert base == {"finetune": {"lr": 0.001, "max_steps": 100}, "seeds": [0]}


def test_apply_creates_missing_and_null_parents():
    assert apply_overrides({"methods": {"rotation": None}}, ["methods.rotation.epochs=2"]) == \
        {"methods": {"rotation": {"epochs": 2}}}
    assert apply_overrides({}, ["a.b.c=x"]) == {"a": {"b": {"c": "x"}}}


@pytest.mark.parametrize("item, fragment", [
    ("labels", "key=value"),
    ("=3", "bad override key"),
    ("a..b=1", "bad override key"),
    ("a b=1", "bad override key"),
    ("x=[1,", "cannot read value"),
])
def test_bad_overrides_are_user_errors(item, fragment):
    with pytest.raises(UserError, match=fragment):
        parse_overrides([item])


def test_override_through_a_non_mapping_names_the_key():
    with pytest.raises(UserError, match=r"labels is list"):
        apply_overrides({"labels": [1, 2]}, ["labels.x=1"])


def test_merge_is_deep():
    assert merge({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"c": 3}, "d": [2]}) == {"a": {"b": 1, "c": 3}, "d": [2]}
