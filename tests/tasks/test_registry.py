import pytest

from selfstudy.errors import UserError
from selfstudy.tasks import TASKS, Task, get_task, parse_spec


def test_every_registered_task_builds_and_round_trips_its_spec():
    for name, cls in TASKS.items():
        task = get_task(name)
        assert isinstance(task, cls) and task.name == name
        assert get_task(task.spec).spec == task.spec
        assert task.primary and task.required_arrays
    t = get_task("pose-regression(within=10)")
    assert get_task(t.spec).within == 10.0
    assert get_task(t) is t


def test_parse_spec():
    assert parse_spec("pose") == ("pose", {})
    assert parse_spec(" pose-regression( within = 12.5 ) ") == ("pose-regression", {"within": 12.5})


@pytest.mark.parametrize("spec, match", [
    ("segmentation-3d", "unknown task.*allowed: classification"),
    ("pose(bins=24)", "does not take arguments"),
    ("pose-regression(30)", "keyword"),
    ("classification(", "bad task"),
    ("pose-regression(within=open('x'))", "bad arguments"),
])
def test_bad_specs_are_user_errors(spec, match):
    with pytest.raises(UserError, match=match):
        get_task(spec)


def test_base_is_abstract_enough():
    assert issubclass(TASKS["pose"], Task)
