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


# --- the typed layer ------------------------------------------------------------------------------

from dataclasses import dataclass  # noqa: E402
from typing import ClassVar  # noqa: E402

from selfstudy.config import Config, canonical, convert, load, load_yaml, option  # noqa: E402


@dataclass
class _Toy(Config):
    config_name: ClassVar[str] = "toy"

    lr: float = option(1e-3, gt=0)
    steps: int = option(10, ge=1)
    frac: float = option(0.5, ge=0, le=1)
    every: int | None = option(None, ge=1)
    betas: tuple[float, float] = (0.9, 0.99)
    grid: tuple[float, ...] = option((0.0, 0.1), ge=0, nonempty=True)
    mode: str = option("a", choices=("a", "b"))
    flag: bool = False

    def check(self) -> None:
        self.require(self.steps >= self.every if self.every else True, "steps", f"an integer >= every ({self.every})")


@dataclass
class _Child(_Toy):
    lr: float = 5e-4  # a new default keeps the parent's rule


def test_load_converts_by_type_hint():
    t = load(_Toy, {"lr": 1, "steps": "20", "frac": "1", "every": "", "betas": "0.8,0.999",
                    "grid": [0, "1e-3"], "flag": "yes"})
    assert (t.lr, t.steps, t.frac, t.every, t.betas, t.grid, t.flag) == (1.0, 20, 1.0, None, (0.8, 0.999),
                                                                         (0.0, 0.001), True)
    assert type(t.lr) is float and type(t.frac) is float and type(t.grid[0]) is float
    assert load(_Toy, {"steps": 1e3}).steps == 1000 and load(_Toy, {"grid": 0.5}).grid == (0.5,)
    assert load(_Toy, {"lr": None}).lr == 1e-3  # None resets to the default
    # An int for a float field is the same config (and the same canonical dict) as the float.
    assert canonical(load(_Toy, {"lr": 1})) == canonical(load(_Toy, {"lr": 1.0}))
    assert canonical(load(_Toy)) == {"lr": 0.001, "steps": 10, "frac": 0.5, "every": None, "betas": [0.9, 0.99],
                                     "grid": [0.0, 0.1], "mode": "a", "flag": False}


@pytest.mark.parametrize("raw, message", [
    ({"lrr": 1}, "toy: unknown option(s) lrr (did you mean 'lr'?); allowed: lr, steps, frac, every, betas, grid, mode, "
                   "flag"),
    ({"lr": 0}, "toy: lr=0 is not allowed; lr must be a number > 0"),
    ({"lr": "fast"}, "toy: lr='fast' is not allowed; lr must be a number > 0"),
    ({"lr": float("nan")}, "toy: lr=nan is not allowed; lr must be a number > 0"),
    ({"steps": 1.5}, "toy: steps=1.5 is not allowed; steps must be an integer >= 1"),
    ({"steps": True}, "toy: steps=True is not allowed; steps must be an integer >= 1"),
    ({"frac": 2}, "toy: frac=2 is not allowed; frac must be a number in [0, 1]"),
    ({"every": 0}, "toy: every=0 is not allowed; every must be an integer >= 1 or empty"),
    ({"betas": [0.9]}, "toy: betas=[0.9] is not allowed; betas must be 2 comma-separated numbers"),
    ({"grid": []}, "toy: grid=[] is not allowed; grid must be a non-empty list of numbers (each >= 0)"),
    ({"grid": [0, -1]}, "toy: grid=[0, -1] is not allowed; grid must be a non-empty list of numbers (each >= 0)"),
    ({"mode": "c"}, "toy: mode='c' is not allowed; mode must be 'a' or 'b'"),
    ({"flag": 1}, "toy: flag=1 is not allowed; flag must be true or false"),
    ({"every": 20}, "toy: steps=10 is not allowed; steps must be an integer >= every (20)"),
])
def test_load_refuses_with_what_is_allowed(raw, message):
    with pytest.raises(UserError) as e:
        load(_Toy, raw)
    assert str(e.value) == message


def test_a_subclass_keeps_the_rules_of_its_parent():
    assert _Child().lr == 5e-4
    with pytest.raises(UserError, match="toy: lr=-1 is not allowed; lr must be a number > 0"):
        load(_Child, {"lr": -1})


def test_convert_without_strings_keeps_a_string():
    assert convert("3", int, "n", "w") == 3
    with pytest.raises(UserError, match="w: n='3' is not allowed; n must be an integer"):
        convert("3", int, "n", "w", strings=False)


def test_yaml_refuses_a_key_given_twice():
    assert load_yaml("a: 1\nb: {c: 2}\n", "f") == {"a": 1, "b": {"c": 2}}
    with pytest.raises(UserError, match=r"^f: not valid YAML \(key 'a' is given twice \(line 1 and line 3\); "
                                        r"give each key once\)$"):
        load_yaml("a: 1\nb: 2\na: 3\n", "f")
    with pytest.raises(UserError, match="key 'c' is given twice"):
        load_yaml("b: {c: 1, c: 2}\n", "f")
    with pytest.raises(UserError, match="given twice"):
        parse_value("{x: 1, x: 2}")
