import ctypes
import sys

import pytest

from selfstudy.errors import UserError
from selfstudy.train import allocator


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(allocator, "_state", {})
    return allocator


def test_mode_from_the_environment(fresh, monkeypatch):
    monkeypatch.delenv("SELFSTUDY_MALLOC", raising=False)
    assert fresh.allocator_mode() == "retain"
    monkeypatch.setenv("SELFSTUDY_MALLOC", " Default ")
    assert fresh.allocator_mode() == "default"
    monkeypatch.setenv("SELFSTUDY_MALLOC", "jemalloc")
    with pytest.raises(UserError, match="SELFSTUDY_MALLOC='jemalloc' is not allowed.*'retain'.*'default'"):
        fresh.allocator_mode()


def test_default_mode_leaves_glibc_alone(fresh, monkeypatch):
    calls = []
    monkeypatch.setenv("SELFSTUDY_MALLOC", "default")
    monkeypatch.setattr(fresh, "_libc", lambda: calls.append(1))
    assert fresh.retain_freed_memory() is False
    assert calls == []


def test_sets_both_tunables_once(fresh, monkeypatch):
    monkeypatch.delenv("SELFSTUDY_MALLOC", raising=False)

    class FakeLibc:
        def __init__(self):
            self.calls = []
            self.mallopt = self

        def __call__(self, param, value):
            self.calls.append((param, value))
            return 1

    fake = FakeLibc()
    monkeypatch.setattr(fresh, "_libc", lambda: fake)
    assert fresh.retain_freed_memory() is True
    assert fake.calls == [(-4, 0), (-1, 2 ** 31 - 1)]  # M_MMAP_MAX = 0, M_TRIM_THRESHOLD = max
    assert fresh.retain_freed_memory() is True
    assert len(fake.calls) == 2  # cached: mallopt runs once per process


def test_failure_reported(fresh, monkeypatch):
    monkeypatch.delenv("SELFSTUDY_MALLOC", raising=False)

    class Refuses:
        def __init__(self):
            self.mallopt = lambda p, v: 0

    monkeypatch.setattr(fresh, "_libc", Refuses)
    assert fresh.retain_freed_memory() is False


def test_no_libc_is_a_no_op(fresh, monkeypatch):
    monkeypatch.delenv("SELFSTUDY_MALLOC", raising=False)
    monkeypatch.setattr(fresh, "_libc", lambda: None)
    assert fresh.retain_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_real_glibc_accepts_the_settings(fresh, monkeypatch):
    monkeypatch.delenv("SELFSTUDY_MALLOC", raising=False)
    libc = fresh._libc()
    if libc is None:
        pytest.skip("not glibc")
    assert fresh.retain_freed_memory() is True
    # Allocation still works afterwards, large blocks included (they now come from the heap).
    buf = ctypes.create_string_buffer(64 * 1024 * 1024)
    buf[-1] = b"x"
    assert buf[-1] == b"x"
