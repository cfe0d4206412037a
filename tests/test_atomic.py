"""pini_core.atomic: a failed write never damages the file that was there."""
import json
import stat

import pytest

from pini_core import atomic


def test_write_replaces_whole_file_with_readable_mode_and_no_leftovers(tmp_path):
    target = tmp_path / "sub" / "meta.json"
    atomic.write_json(target, {"a": 1})
    atomic.write_json(target, {"b": [1, 2]})
    assert json.loads(target.read_text()) == {"b": [1, 2]}
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["meta.json"]


def test_exception_inside_the_block_keeps_the_old_file(tmp_path):
    target = tmp_path / "weights.bin"
    atomic.write_bytes(target, b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic.atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half of the new")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_unserialisable_json_fails_before_touching_the_file(tmp_path):
    target = tmp_path / "meta.json"
    atomic.write_text(target, "keep me")
    with pytest.raises(TypeError, match="not JSON serializable"):
        atomic.write_json(target, {"x": object()})
    assert target.read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]
