"""Atomic writes: the complete new content or the old file, and no temporary file left either way."""

import pytest

from selfstudy.core.io import atomic_write, atomic_write_bytes, atomic_write_text


def test_atomic_write_text(tmp_path):
    f = tmp_path / "x.json"
    assert atomic_write_text(f, "hello é") == f
    assert f.read_text(encoding="utf-8") == "hello é"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_atomic_write_bytes_replaces_the_old_file(tmp_path):
    f = tmp_path / "x.png"
    f.write_bytes(b"old")
    atomic_write_bytes(f, b"\x89PNG new")
    assert f.read_bytes() == b"\x89PNG new"
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    f = tmp_path / "state.pt"
    f.write_bytes(b"previous")

    def half_then_fail(fh):
        fh.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(f, half_then_fail)
    assert f.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]
