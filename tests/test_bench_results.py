"""The results file: append-only JSON lines, crash-tolerant, clear errors."""
import json

import pytest

from pini_core.bench.results import ResultsFile, cell_key, config_hash, latest_per_setting

BASE = dict(method="coop", dataset="d", shots=1, seed=1, backbone="b", config="x")


def test_append_load_and_keys(tmp_path):
    rf = ResultsFile(tmp_path / "sub" / "r.jsonl")
    assert rf.load() == [] and rf.done_keys() == set()
    rf.append({**BASE, "accuracy": 50.0})
    rf.append({**BASE, "seed": 2, "accuracy": 60.0})
    assert [r["accuracy"] for r in rf.load()] == [50.0, 60.0]
    assert rf.done_keys() == {("coop", "d", 1, 1, "b", "x"), ("coop", "d", 1, 2, "b", "x")}
    assert rf.path.read_text().count("\n") == 2
    with pytest.raises(KeyError, match="lacks \\['config'\\]"):
        rf.append({k: v for k, v in BASE.items() if k != "config"})


def test_truncated_tail_is_skipped_then_repaired_on_append(tmp_path):
    rf = ResultsFile(tmp_path / "r.jsonl")
    rf.append({**BASE, "accuracy": 1.0})
    with open(rf.path, "ab") as f:
        f.write(b'{"method": "co')
    with pytest.warns(UserWarning, match="truncated last line"):
        assert len(rf.load()) == 1
    rf.append({**BASE, "seed": 3, "accuracy": 3.0})
    lines = rf.path.read_text().splitlines()
    assert [json.loads(x)["seed"] for x in lines] == [1, 3]


def test_complete_last_line_without_newline_is_kept(tmp_path):
    rf = ResultsFile(tmp_path / "r.jsonl")
    rf.path.write_text(json.dumps({**BASE, "accuracy": 7.0}))  # no final newline
    assert rf.load()[0]["accuracy"] == 7.0
    rf.append({**BASE, "seed": 2})
    assert len(rf.path.read_text().splitlines()) == 2


def test_corrupt_middle_line_is_a_clear_error(tmp_path):
    rf = ResultsFile(tmp_path / "r.jsonl")
    rf.path.write_text(json.dumps(BASE) + "\nnot json\n" + json.dumps(BASE) + "\n")
    with pytest.raises(ValueError, match="line 2 is not valid JSON .* Fix or delete that line"):
        rf.load()


def test_config_hash_is_stable_and_order_free():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert len(config_hash({})) == 10


def test_latest_per_setting_keeps_last_written():
    recs = [{**BASE, "accuracy": 1.0}, {**BASE, "config": "y", "accuracy": 2.0}, {**BASE, "seed": 2}]
    out = latest_per_setting(recs)
    assert len(out) == 2 and out[0]["accuracy"] == 2.0
    assert cell_key(out[0]) == ("coop", "d", 1, 1, "b", "y")
