"""Issue 12, engine side, checkpoints: a save killed at any step leaves the old or the new
checkpoint (never neither) and its leftovers are cleaned on the next save; bad configs give
one clear CheckpointError line each; NaN/inf weights are refused; a checkpoint's config
never makes the tool open a path or hub repository the user did not pass."""
from __future__ import annotations

import json
import os
import signal
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

import pini_core.checkpoint as ckpt_mod
from engine_fixtures import make_model, shared_backbone
from pini_core.checkpoint import (CONFIG_NAME, WEIGHTS_NAME, CheckpointError, backbone_spec_for, config_digest,
                                  load_pini, read_config, save_pini)
from pini_core.errors import PiniError, UnsafePathError


@pytest.fixture(scope="module")
def bb():
    return shared_backbone()


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _rehash(folder, cfg=None, state=None):
    """Rewrite a checkpoint as another tool could (weights and/or config changed, hashes valid)."""
    if state is not None:
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": ckpt_mod.FORMAT})
    cfg = dict(cfg if cfg is not None else json.loads((folder / CONFIG_NAME).read_text()))
    cfg["weights_sha256"] = ckpt_mod._sha256(folder / WEIGHTS_NAME)
    cfg["config_sha256"] = config_digest(cfg)
    (folder / CONFIG_NAME).write_text(json.dumps(cfg))


# ----------------------------------------------------------------------------- item 1: kill during save

def _save_killed_at(step: int, model, folder) -> bool:
    """Fork a child that saves `model` into `folder` and SIGKILLs itself just before the
    step-th file-system call of the save (save_file, fsync, replace, unlink). True when it
    was killed, False when the save finished before reaching that step."""
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            count = [0]

            def hook(fn):
                def wrapped(*args, **kwargs):
                    count[0] += 1
                    if count[0] == step:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return fn(*args, **kwargs)
                return wrapped

            os.replace, os.fsync, os.unlink = hook(os.replace), hook(os.fsync), hook(os.unlink)
            ckpt_mod.save_file = hook(ckpt_mod.save_file)
            save_pini(model, folder, metrics={"which": "new"})
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_save_killed_at_any_step_leaves_the_old_or_the_new_checkpoint(bb, tmp_path):
    torch.set_num_threads(1)
    old_model = make_model(bb, seed=0, n_ctx=4)
    new_model = make_model(bb, seed=0, n_ctx=4)
    with torch.no_grad():
        for p in new_model.parameters():
            p.mul_(2.0).add_(0.5)
    old, new = _state(old_model), _state(new_model)
    folder = tmp_path / "ck"
    (folder / "notes.txt").parent.mkdir(parents=True)
    (folder / "notes.txt").write_text("the user's own file")  # other files survive every save
    save_pini(old_model, folder, metrics={"which": "old"})
    outcomes, leftovers_seen = [], 0
    for step in range(1, 60):
        killed = _save_killed_at(step, new_model, folder)
        if not killed:
            break
        names = sorted(p.name for p in folder.iterdir())
        leftovers_seen += any(n.startswith(".") for n in names)
        loaded = _state(load_pini(folder, bb))
        which = read_config(folder)["metrics"]["which"]
        assert _same(loaded, old) or _same(loaded, new), f"killed at step {step}: neither checkpoint loads ({names})"
        assert which == ("old" if _same(loaded, old) else "new"), f"step {step}: config and weights of two saves"
        outcomes.append(which)
        # the next save cleans (or finishes) what the killed one left, and replaces it as a unit
        save_pini(old_model, folder, metrics={"which": "old"})
        assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_NAME, "notes.txt", WEIGHTS_NAME])
        assert _same(_state(load_pini(folder, bb)), old)
    else:
        pytest.fail("the save never finished")
    assert step > 6, "the save has fewer steps than expected: the hook did not see them"
    assert "old" in outcomes and "new" in outcomes, outcomes  # kills before and after the commit point
    assert outcomes == sorted(outcomes, key=lambda w: w == "new"), outcomes  # old ... old new ... new
    assert leftovers_seen > 0
    assert (folder / "notes.txt").read_text() == "the user's own file"


def test_a_committed_but_unfinished_save_is_read_and_rolled_forward(bb, tmp_path):
    """The state after a kill just past the commit point, made by hand: marker + staged files."""
    old_model, new_model = make_model(bb, seed=0, n_ctx=4), make_model(bb, seed=1, n_ctx=4)
    folder = save_pini(old_model, tmp_path / "ck", metrics={"which": "old"})
    staging = save_pini(new_model, tmp_path / "staging", metrics={"which": "new"})
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        os.replace(staging / name, folder / f".{name}.new")
    (folder / ".pini_commit.json").write_text(json.dumps({"files": [WEIGHTS_NAME, CONFIG_NAME]}))
    os.replace(folder / f".{WEIGHTS_NAME}.new", folder / WEIGHTS_NAME)  # one of two renames done
    assert read_config(folder)["metrics"]["which"] == "new"
    assert _same(_state(load_pini(folder, bb)), _state(new_model))
    # without the marker the staged files are an uncommitted save: ignored, then removed
    folder2 = save_pini(old_model, tmp_path / "ck2", metrics={"which": "old"})
    (folder2 / f".{CONFIG_NAME}.new").write_text("{half a file")
    (folder2 / f".{WEIGHTS_NAME}.abc123.tmp").write_bytes(b"older writer's temp")
    assert read_config(folder2)["metrics"]["which"] == "old"
    save_pini(new_model, folder2, metrics={"which": "new"})
    assert sorted(p.name for p in folder2.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    # the next save rolls the committed one forward first, then replaces it
    save_pini(old_model, folder, metrics={"which": "again"})
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    assert read_config(folder)["metrics"]["which"] == "again"


def test_a_disk_error_while_saving_keeps_the_old_checkpoint_and_is_a_pini_error(bb, tmp_path, monkeypatch):
    model = make_model(bb, seed=0, n_ctx=4)
    folder = save_pini(model, tmp_path / "ck")
    before = {n: (folder / n).read_bytes() for n in (CONFIG_NAME, WEIGHTS_NAME)}
    real = os.replace

    def full(src, dst):
        if str(dst).endswith(".pini_commit.json"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(CheckpointError, match="No space left on device .*previous checkpoint is kept") as e:
        save_pini(make_model(bb, seed=3, n_ctx=4), folder)
    assert isinstance(e.value, OSError) and isinstance(e.value, PiniError)
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    assert {n: (folder / n).read_bytes() for n in (CONFIG_NAME, WEIGHTS_NAME)} == before


# ----------------------------------------------------------------------------- item 9: bad configs

@pytest.fixture
def saved(bb, tmp_path):
    return save_pini(make_model(bb, seed=0, n_ctx=4), tmp_path / "ck")


def _cfg(folder):
    return json.loads((folder / CONFIG_NAME).read_text())


@pytest.mark.parametrize("edit, expect", [
    (lambda c: [], r"holds a JSON list, not a checkpoint config"),
    (lambda c: None, r"holds a JSON null, not a checkpoint config"),
    (lambda c: {k: v for k, v in c.items() if k != "backbone"}, r"the config lacks 'backbone' \(a checkpoint"),
    (lambda c: dict(c, backbone="embedded"), r"'backbone' must be an object with a model 'name'"),
    (lambda c: dict(c, classnames=["red", 7]), r"every class name must be non-empty text; found 7 \(int\)"),
    (lambda c: dict(c, classnames=[]), r"'classnames' must be a non-empty list"),
    (lambda c: dict(c, classnames=["red", "red"]), r"class name\(s\) \['red'\] appear more than once"),
    (lambda c: dict(c, template="a photo"), r"'template' must be text with exactly one '\{\}'"),
    (lambda c: dict(c, noise=[1]), r"'noise' must be an object of noise settings"),
])
def test_each_malformed_config_is_one_clear_checkpoint_error(bb, saved, edit, expect):
    (saved / CONFIG_NAME).write_text(json.dumps(edit(_cfg(saved))))
    with pytest.raises(CheckpointError, match=expect) as e:
        load_pini(saved, bb)
    assert "\n" not in str(e.value) and str(e.value).startswith(str(saved))
    assert "Re-save or re-train" in str(e.value)


def test_a_changed_template_is_caught_by_the_config_hash(bb, saved):
    cfg = _cfg(saved)
    cfg["template"] = "a blurry photo of a big {}."
    (saved / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"was changed after the checkpoint was saved \(its config_sha256"):
        load_pini(saved, bb)
    # a config without the hash (older writer): the weights no longer fit, said in one line
    del cfg["config_sha256"]
    (saved / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"tensor text_gen\.\w+: \[\d+, 32\] in the file, \[\d+, 32\] expected"):
        load_pini(saved, bb)


def test_a_tensor_of_the_wrong_shape_is_named(bb, saved):
    state = load_file(str(saved / WEIGHTS_NAME))
    key = sorted(state)[0]
    state[key] = torch.zeros(*[d + 1 for d in state[key].shape])
    _rehash(saved, state=state)
    with pytest.raises(CheckpointError, match=rf"tensor {key}: \[.*\] in the file, \[.*\] expected"):
        load_pini(saved, bb)


# ----------------------------------------------------------------------------- item 10: NaN / inf

@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load_and_never_saved(bb, saved, value, tmp_path):
    state = load_file(str(saved / WEIGHTS_NAME))
    key = sorted(state)[-1]
    state[key] = state[key].clone()
    state[key].view(-1)[0] = value
    _rehash(saved, state=state)
    with pytest.raises(CheckpointError, match=rf"holds NaN/inf weights \({key} \(1 of \d+ values\)\)"):
        load_pini(saved, bb)
    model = make_model(bb, seed=0, n_ctx=4)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = value
    with pytest.raises(CheckpointError, match="not saved: the generator weights hold NaN/inf"):
        save_pini(model, tmp_path / "diverged")
    assert not (tmp_path / "diverged").exists()


# ----------------------------------------------------------------------------- item 5: config-driven paths

@pytest.mark.parametrize("backbone, what", [
    ({"name": "local-dir:/etc"}, "the backbone 'local-dir:/etc'"),
    ({"name": "hf-hub:someone/model"}, "the backbone 'hf-hub:someone/model'"),
    ({"name": "/etc/passwd"}, "the backbone '/etc/passwd'"),
    ({"name": "ViT-B-32", "pretrained": "/tmp/evil.pt"}, "the weights '/tmp/evil.pt' for ViT-B-32"),
    ({"name": "ViT-B-32", "pretrained": "../evil.bin"}, "the weights '../evil.bin' for ViT-B-32"),
    ({"name": "my-registered-arch"}, "not an open_clip architecture name"),
])
def test_a_checkpoint_never_names_the_paths_or_repos_the_tool_opens(backbone, what):
    cfg = {"backbone": backbone}
    with pytest.raises(UnsafePathError, match="does not open local paths or hub repositories") as e:
        backbone_spec_for(cfg)
    assert what in str(e.value) and "pass the backbone yourself (--model" in str(e.value)
    # what the user passes is used as given
    assert backbone_spec_for(cfg, "local-dir:/models/mine", None) == ("local-dir:/models/mine", None)


def test_registered_names_and_tags_from_a_config_are_allowed():
    assert backbone_spec_for({"backbone": {"name": "embedded", "pretrained": None}}) == ("embedded", None)
    assert backbone_spec_for({"backbone": {"name": "ViT-B-32", "pretrained": "openai"}}) == ("ViT-B-32", "openai")
    # the user's --pretrained replaces the config's tag
    assert backbone_spec_for({"backbone": {"name": "ViT-B-32", "pretrained": "openai"}}, None,
                             "/w/b32.safetensors") == ("ViT-B-32", "/w/b32.safetensors")


@pytest.mark.parametrize("command", ["decode", "eval"])
def test_cli_refuses_a_config_named_path_before_opening_anything(saved, command, capsys, monkeypatch):
    import pini_core.commands.common as common
    from pini_core.cli import main

    cfg = _cfg(saved)
    cfg["backbone"] = dict(cfg["backbone"], name="local-dir:/etc", pretrained=None)
    _rehash(saved, cfg=cfg)

    def no_load(*a, **k):
        raise AssertionError("a backbone was loaded")

    monkeypatch.setattr(common, "load_backbone", no_load)
    assert main([command, "--checkpoint", str(saved), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the checkpoint's config names the backbone 'local-dir:/etc'")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_prints_one_line_for_a_bad_config(saved, capsys):
    from pini_core.cli import main

    (saved / CONFIG_NAME).write_text("null")
    assert main(["decode", "--checkpoint", str(saved), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {saved / CONFIG_NAME}: holds a JSON null, not a checkpoint config (a JSON object with " \
                  "format, backbone, noise, classnames, template); the checkpoint cannot be used. Re-save or " \
                  "re-train it.\n"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
