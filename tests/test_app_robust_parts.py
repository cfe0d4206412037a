"""Issue 12, the app half, without a server: the model box's policy (item 4), scratch folders
(item 6), messages without server paths (item 7), zip cases (item 8), the `friendly` wrapper."""
from __future__ import annotations

import builtins
import os
import time
import zipfile
from pathlib import Path

import gradio as gr
import pytest

from demo import backbones
from demo.session import (APP_TMP, ScratchSpace, SessionState, cleanup_session, in_use, new_scratch_dir,
                          session_zip)
from demo.util import friendly, scrub_paths
from pini_core.errors import ConfigError, DataError, ModelLoadError, PiniError, UnsafePathError
from pini_core.uploads import UploadError, extract_image_zip, load_unpacked
from tests import app_badfiles as bad

PNG = bad.png_bytes(bad.photo_like(1, 32))


@pytest.fixture
def policy(monkeypatch):
    """No operator allowances (the default)."""
    for var in (backbones.ENV_ALLOW_DIR, backbones.ENV_ALLOW_MODELS, backbones.ENV_MAX_PARAMS_M,
                backbones.ENV_ALLOW_HUB):
        monkeypatch.setenv(var, "-")  # recorded, so whatever a test (or app.apply_policy) sets is undone
        monkeypatch.delenv(var)
    return monkeypatch


# ----- item 4: the model box -----------------------------------------------------------
@pytest.mark.parametrize("spec", ["ViT-B-32:/etc/passwd", "ViT-B-32:/etc/no-such-file", "local-dir:/etc",
                                  "local-dir:/no/such/dir", "ViT-L-14:/etc/passwd", "NoSuchNet:/etc/passwd",
                                  "RN50:weights.safetensors", "RN50:../x.pt", "RN50:~/w.bin"])
def test_server_paths_are_refused_by_default_without_touching_the_file_system(policy, spec):
    touched = []
    real_open, real_stat, real_lstat = builtins.open, os.stat, os.lstat
    with pytest.MonkeyPatch.context() as mp, pytest.raises(UnsafePathError) as e:
        mp.setattr(builtins, "open", lambda f, *a, **k: (touched.append(str(f)), real_open(f, *a, **k))[1])
        mp.setattr(os, "stat", lambda p, *a, **k: (touched.append(str(p)), real_stat(p, *a, **k))[1])
        mp.setattr(os, "lstat", lambda p, *a, **k: (touched.append(str(p)), real_lstat(p, *a, **k))[1])
        backbones.check_visitor_spec(spec, "embedded")
    assert str(e.value).startswith("This app does not open files or folders on the server.")
    assert "--allow-dir" in str(e.value)
    target = spec.split(":", 1)[1]
    assert not [t for t in touched if t.startswith(("/etc", "/no/")) or t.endswith(os.path.basename(target))]


def test_the_same_message_whether_or_not_the_file_exists(policy, tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    policy.setenv(backbones.ENV_ALLOW_DIR, str(allowed))
    msgs = set()
    for spec in ("ViT-B-32:/etc/passwd", "ViT-B-32:/etc/no-such-file", "local-dir:/etc", "local-dir:/nothing/here"):
        with pytest.raises(UnsafePathError) as e:
            backbones.check_visitor_spec(spec, "embedded")
        msgs.add(str(e.value))
    assert len(msgs) == 1
    assert msgs.pop() == (f"This app only opens weights inside the folder(s) its operator allowed: "
                          f"{os.path.realpath(allowed)}. Type NAME:/full/path/inside/that/folder or "
                          "local-dir:/full/path.")


def test_allowed_folder_resolves_links_and_dot_dots(policy, tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "escape").symlink_to("/etc")
    (allowed / "inner").mkdir()
    (allowed / "inner" / "w.safetensors").write_bytes(b"x")
    policy.setenv(backbones.ENV_ALLOW_DIR, str(allowed))
    ok = f"ViT-B-32:{allowed}/inner/w.safetensors"
    assert backbones.check_visitor_spec(ok, "embedded") == ok
    assert backbones.check_visitor_spec(f"ViT-B-32:{allowed}/missing.safetensors", "embedded")  # inside: allowed
    for spec in (f"ViT-B-32:{allowed}/escape/passwd", f"ViT-B-32:{allowed}/../allowed2/w.pt",
                 f"local-dir:{allowed}/escape", "ViT-B-32:inner/w.safetensors"):
        with pytest.raises(UnsafePathError, match="only opens weights inside"):
            backbones.check_visitor_spec(spec, "embedded")


def test_local_dir_inside_the_allowed_folder_is_size_checked(policy, tmp_path):
    import json

    import open_clip

    allowed = tmp_path / "models"
    (allowed / "big").mkdir(parents=True)
    (allowed / "big" / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": open_clip.get_model_config("ViT-L-14")}))
    policy.setenv(backbones.ENV_ALLOW_DIR, str(allowed))
    with pytest.raises(ModelLoadError, match=r"big has about 42\d M parameters"):
        backbones.check_visitor_spec(f"local-dir:{allowed}/big", "embedded")


def test_architecture_size_is_limited_unless_allowed(policy):
    with pytest.raises(ModelLoadError) as e:
        backbones.check_visitor_spec("ViT-L-14:openai", "embedded")
    assert "ViT-L-14 has about 427 M parameters; this app builds models of up to 200 M" in str(e.value)
    assert "--allow-model ViT-L-14" in str(e.value)
    assert backbones.check_visitor_spec("ViT-B-16:laion400m_e32", "embedded")  # 150 M: fine
    policy.setenv(backbones.ENV_ALLOW_MODELS, "ViT-L-14")
    assert backbones.check_visitor_spec("ViT-L-14:openai", "embedded") == "ViT-L-14:openai"
    policy.setenv(backbones.ENV_ALLOW_MODELS, "")
    policy.setenv(backbones.ENV_MAX_PARAMS_M, "100")
    with pytest.raises(ModelLoadError, match="up to 100 M"):
        backbones.check_visitor_spec("ViT-B-16:laion400m_e32", "embedded")
    policy.setenv(backbones.ENV_MAX_PARAMS_M, "lots")
    with pytest.raises(ConfigError, match="millions of parameters"):
        backbones.max_params()


def test_list_choices_operator_spec_and_unknown_tags(policy):
    for _, spec in backbones.CHOICES:
        assert backbones.check_visitor_spec(spec, "embedded") == spec
    # the operator's own --model may name a path; a visitor typing the same is no escalation
    assert backbones.check_visitor_spec("local-dir:/srv/clip", "local-dir:/srv/clip") == "local-dir:/srv/clip"
    with pytest.raises(ModelLoadError, match="Unknown pretrained tag 'app.py' for RN50. Known tags: openai"):
        backbones.check_visitor_spec("RN50:app.py", "embedded")  # a file in the server's folder: never opened
    with pytest.raises(UnsafePathError, match="Hugging Face hub"):
        backbones.check_visitor_spec("hf-hub:someone/model", "embedded")
    policy.setenv(backbones.ENV_ALLOW_HUB, "1")
    assert backbones.check_visitor_spec("hf-hub:someone/model", "embedded") == "hf-hub:someone/model"
    assert backbones.check_visitor_spec("NoSuchNet-99:x", "embedded")  # the loader names unknown models


@pytest.mark.parametrize("name", ["ViT-B-32", "RN50", "ViT-S-16"])
def test_param_estimate_matches_a_meta_device_build(name):
    import open_clip
    import torch

    with torch.device("meta"):
        model = open_clip.create_model(name, pretrained=None, device="meta")
    real = sum(p.numel() for p in model.parameters())
    est = backbones.estimate_params(open_clip.get_model_config(name))
    assert abs(est - real) / real < 0.05, (est, real)


def test_box_label_mentions_paths_only_when_allowed(policy, tmp_path):
    assert "/path" not in backbones.box_label()
    assert "local-dir" not in backbones.failure_message("x", RuntimeError("boom"))
    policy.setenv(backbones.ENV_ALLOW_DIR, str(tmp_path))
    assert "local-dir:/path" in backbones.box_label()
    assert str(tmp_path) in backbones.failure_message("x", RuntimeError("boom"))


def test_app_flags_set_the_policy(policy, tmp_path):
    import app

    app.apply_policy(app.parse_args(["--allow-dir", str(tmp_path), "--allow-model", "ViT-L-14",
                                     "--max-params-m", "50", "--allow-hub"]))
    assert backbones.allowed_dirs() == [os.path.realpath(tmp_path)]
    assert backbones.allowed_models() == ["ViT-L-14"] and backbones.max_params() == 50e6 and backbones.hub_allowed()
    with pytest.raises(SystemExit, match="--allow-dir '/no/such/dir' is not a folder"):
        app.apply_policy(app.parse_args(["--allow-dir", "/no/such/dir"]))


# ----- item 7 + the error hierarchy: `friendly` ------------------------------------------
def test_scrub_paths_keeps_the_users_names_only():
    msg = (f"{APP_TMP}/run-1-ab12/0123456789abcdef/data-ff/dog/broken img.png: not an image; "
           f"{APP_TMP}/run-1-ab12/0123456789abcdef/.unpack-x1/d/cat/1.png; /tmp/gradio/3f2a/my photo.png; "
           f"{Path(backbones.__file__).resolve().parent.parent}/checkpoints/toyclip/open_clip_config.json")
    out = scrub_paths(msg)
    assert out == ("dog/broken img.png: not an image; cat/1.png; my photo.png; open_clip_config.json")
    root = f"{APP_TMP}/run-1-ab12/0123456789abcdef/data-ff"
    assert scrub_paths(f"{root}: found 1 class folder(s)") == "your upload: found 1 class folder(s)"
    assert scrub_paths(f"see {APP_TMP}/photos/cat.png") == "see cat.png"
    assert scrub_paths("/tmp/gradio/3f2a") == "your upload"


def test_friendly_shows_pini_errors_and_hides_everything_else(caplog):
    secret = f"{APP_TMP}/run-9-aa/0123456789abcdef/data-1/cat/x.png"

    @friendly
    def user_error():
        raise DataError(f"The image {secret} is broken.")

    @friendly
    def bug():
        raise ValueError(f"internal detail at {secret}")

    @friendly
    def gen():
        yield 1
        raise KeyError("/etc/secret")

    with pytest.raises(gr.Error) as e:
        user_error()
    assert e.value.message == "The image cat/x.png is broken."
    with pytest.raises(gr.Error) as e:
        bug()
    assert e.value.message.startswith("Something went wrong on the server (error id ")
    assert "ValueError" in e.value.message
    assert "pini-app" not in e.value.message and "internal detail" not in e.value.message
    ref = e.value.message.split("error id ")[1][:8]
    assert any(ref in r.getMessage() for r in caplog.records)  # the log has the id (and the traceback)
    with pytest.raises(gr.Error) as e:
        list(gen())
    assert "/etc/secret" not in e.value.message and "KeyError" in e.value.message


def test_engine_missing_is_a_pini_error():
    from demo.engine import EngineMissing

    assert issubclass(EngineMissing, PiniError) and issubclass(UploadError, PiniError)


# ----- item 6: scratch folders ------------------------------------------------------------
def test_idle_sessions_are_swept_busy_ones_are_not(tmp_path):
    space = ScratchSpace(tmp_path / "run")
    a, b = space.session_dir("a"), space.session_dir("b")
    (a / "f").write_bytes(b"x")
    stray = space.root / "stray"  # a folder no live session knows (e.g. its state was never stored)
    stray.mkdir()
    os.utime(stray, (time.time() - 100, time.time() - 100))
    with space.busy("b"):
        removed = space.sweep(now=time.time() + 50, ttl=10)
        assert sorted(removed) == ["a", "stray"] and not a.exists() and b.exists()
    assert space.sweep(now=time.time() + 5, ttl=10) == []  # b was just used
    assert space.sweep(now=time.time() + 50, ttl=10) == ["b"] and not b.exists()


def test_expiry_during_a_request_waits_for_its_end(tmp_path):
    space = ScratchSpace(tmp_path / "run")
    d = space.session_dir("s")
    with space.busy("s"):
        space.expire("s")
        assert d.exists()
    assert not d.exists()
    space.session_dir("t")
    space.close()
    assert not space.root.exists()


def test_gradio_delete_callback_removes_the_session_folder(tmp_path, monkeypatch):
    from demo import session as sess

    root = tmp_path / "run"
    state = SessionState(scratch_root=str(root))
    work = state.workdir
    assert work.parent == root and work.is_dir()
    with in_use(state):
        cleanup_session(state)
        assert work.exists()  # in use: removed when the request ends
    assert not work.exists()
    assert sess.space_for(str(root)) is state.space


def test_dead_app_processes_folders_are_removed(tmp_path):
    dead = tmp_path / "run-999999999-abcd"
    alive = tmp_path / f"run-{os.getpid()}-abcd"
    other = tmp_path / "photos"
    for d in (dead, alive, other):
        d.mkdir()
    assert ScratchSpace.remove_dead_runs(tmp_path) == [dead.name]
    assert alive.exists() and other.exists()


def test_only_the_newest_checkpoint_folders_are_kept(tmp_path):
    state = SessionState(scratch_root=str(tmp_path / "run"))
    made = []
    for i in range(5):
        d = new_scratch_dir(state, "ckpt-")
        os.utime(d, (time.time() - 100 + i, time.time() - 100 + i))
        made.append(d)
    assert sorted(p.name for p in state.workdir.iterdir()) == sorted(p.name for p in made[-3:])


def _zip(path: Path, classes=("cat", "dog"), n=3, size=32) -> Path:
    return bad.class_zip(path, classes=classes, per_class=n)


def test_the_same_zip_is_unpacked_once_per_session(tmp_path):
    state = SessionState(scratch_root=str(tmp_path / "run"))
    (tmp_path / "upload1").mkdir()
    z = _zip(tmp_path / "upload1" / "pets.zip")
    copy = tmp_path / "upload2" / "pets.zip"  # Gradio stores each upload in a new folder
    copy.parent.mkdir()
    copy.write_bytes(z.read_bytes())
    ds1 = session_zip(state, z)
    ds2 = session_zip(state, copy)
    assert ds1.root == ds2.root and ds1.items == ds2.items and ds1.classnames == ["cat", "dog"]
    data = [p for p in state.workdir.iterdir()]
    assert len(data) == 1 and data[0].name.startswith("data-")
    assert load_unpacked(ds1.root).counts() == {"cat": 3, "dog": 3}
    # a damaged copy (a file removed) is unpacked again, not used
    os.remove(ds1.items[0][0])
    ds3 = session_zip(state, z)
    assert Path(ds3.items[0][0]).is_file() and len(list(state.workdir.iterdir())) == 1


def test_session_disk_is_bounded(tmp_path, monkeypatch):
    from demo import session as sess

    state = SessionState(scratch_root=str(tmp_path / "run"))
    z1, z2 = _zip(tmp_path / "a.zip", n=4), _zip(tmp_path / "b.zip", classes=("x", "y"), n=4)
    one = sum(i.file_size for i in zipfile.ZipFile(z1).infolist())
    monkeypatch.setenv(sess.ENV_SESSION_MB, str(1.5 * one / 2**20))  # room for one unpacked zip, not two
    ds1 = session_zip(state, z1)
    ds2 = session_zip(state, z2)  # the older data goes to make room
    assert not ds1.root.exists() and ds2.root.exists()
    assert sess.folder_bytes(state.workdir) <= 1.5 * one + 4096
    monkeypatch.setenv(sess.ENV_SESSION_MB, str(0.5 * one / 2**20))
    with pytest.raises(DataError, match="each session may use"):
        session_zip(state, z1)
    # all sessions together are bounded too: another session's data counts (while it is not idle)
    monkeypatch.setenv(sess.ENV_SESSION_MB, str(1.5 * one / 2**20))
    monkeypatch.setenv(sess.ENV_TOTAL_MB, str(1.5 * one / 2**20))
    other = SessionState(scratch_root=state.scratch_root)
    with pytest.raises(DataError, match="scratch space for all visitors is full"):
        session_zip(other, z1)
    assert ds2.root.exists() and not any(other.workdir.iterdir())
    monkeypatch.setenv(sess.ENV_SESSION_MB, "-3")
    with pytest.raises(ConfigError, match="PINI_APP_SESSION_MB must be positive"):
        sess.session_quota_bytes()


def test_a_failed_unpack_leaves_nothing(tmp_path):
    state = SessionState(scratch_root=str(tmp_path / "run"))
    z = tmp_path / "bad.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("cat/1.png", PNG)
        f.writestr("dog/1.png", b"\x89PNG not really")
    with pytest.raises(UploadError, match="'dog/1.png'"):
        session_zip(state, z)
    assert list(state.workdir.iterdir()) == []


# ----- item 8: zips ------------------------------------------------------------------------
def _write(path: Path, members) -> Path:
    with zipfile.ZipFile(path, "w") as f:
        for name, data in members:
            f.writestr(name, data)
    return path


def _corrupt_crc(path: Path, member: str) -> Path:
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as f:
        info = f.getinfo(member)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + 40] ^= 0xFF  # one byte of the stored data: the CRC no longer matches
    path.write_bytes(bytes(raw))
    return path


def _encrypted(path: Path) -> Path:
    _write(path, [("cat/1.png", PNG), ("dog/1.png", PNG)])
    raw = bytearray(path.read_bytes())
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):  # set the "encrypted" flag in every header
        i = raw.find(sig)
        while i >= 0:
            off = i + (6 if sig == b"PK\x03\x04" else 8)
            raw[off] |= 0x01
            i = raw.find(sig, i + 4)
    path.write_bytes(bytes(raw))
    return path


LONG = "c" * 300
ZIP_CASES = [
    ("file-and-folder", lambda p: _write(p, [("cat/x.png", PNG), ("cat/x.png/y.png", PNG), ("dog/1.png", PNG)]),
     "The zip uses 'cat/x.png' both as a file and as a folder (it also holds 'cat/x.png/y.png'). "
     "Please rename one of them."),
    ("long-file-name", lambda p: _write(p, [(f"cat/{LONG}.png", PNG), ("dog/1.png", PNG)]),
     "The zip has a file name of 304 characters: '" + "c" * 48 + "…" + "c" * 20 + ".png' (304 characters). "
     "Names may have at most 255 bytes; please rename it."),
    ("long-class-name", lambda p: _write(p, [(f"{LONG}/1.png", PNG), ("dog/1.png", PNG)]),
     "The zip has a folder name of 300 characters: '" + "c" * 48 + "…" + "c" * 24 + "' (300 characters). "
     "Names may have at most 255 bytes; please rename it."),
    ("bad-crc", lambda p: _corrupt_crc(_write(p, [("cat/1.png", PNG), ("dog/1.png", PNG)]), "dog/1.png"),
     "The zip member 'dog/1.png' is damaged (its data or checksum does not match what the zip records). "
     "Please re-create the zip."),
    ("encrypted", _encrypted,
     "The zip member 'cat/1.png' is encrypted (password-protected). Please zip the images without a password."),
    ("flat-splits", lambda p: _write(p, [("train/1.png", PNG), ("train/2.png", PNG), ("test/3.png", PNG)]),
     "The zip has images directly in the split folder train/ (e.g. 'train/1.png'). Inside train/, put each "
     "class's images in a folder named after the class, e.g. train/cat/1.jpg."),
    ("flat-splits-in-top-folder", lambda p: _write(p, [("pets/train/1.png", PNG), ("pets/test/3.png", PNG)]),
     "The zip has images directly in the split folder train/ (e.g. 'train/1.png'). Inside train/, put each "
     "class's images in a folder named after the class, e.g. train/cat/1.jpg."),
    ("splits-without-train", lambda p: _write(p, [("val/cat/1.png", PNG), ("test/dog/3.png", PNG)]),
     "The zip has split folders (test/, val/) but no train/ folder. Put the training images in "
     "train/<class>/ (test/ and val/ are optional)."),
    ("two-train-folders", lambda p: _write(p, [("train/cat/1.png", PNG), ("training/dog/3.png", PNG)]),
     "The zip has both train/ and training/, which are the same split (train). Please keep one of them."),
    ("duplicate", lambda p: _write(p, [("cat/1.png", PNG), ("cat/1.png", PNG), ("dog/1.png", PNG)]),
     "The zip contains 'cat/1.png' twice. Please keep one of them."),
]


@pytest.mark.parametrize("case, make, message", ZIP_CASES, ids=[c[0] for c in ZIP_CASES])
def test_zip_cases_get_one_clear_line_and_leave_nothing(tmp_path, case, make, message):
    import warnings

    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name while writing
        z = make(tmp_path / "data.zip")
        with pytest.raises(UploadError) as e:
            extract_image_zip(z, out)
    assert str(e.value) == message
    assert "\n" not in str(e.value) and str(tmp_path) not in str(e.value)
    assert not out.exists()  # refused before anything was written, or cleaned up after


def test_split_zip_with_class_folders_still_works(tmp_path):
    z = _write(tmp_path / "ok.zip", [("Training/cat/1.png", PNG), ("Training/dog/1.png", PNG),
                                     ("testing/cat/2.png", PNG), ("testing/dog/2.png", PNG)])
    ds = extract_image_zip(z, tmp_path / "out")
    assert ds.classnames == ["cat", "dog"] and len(ds.items) == 4
    from pini_core.data.imagefolder import load_imagefolder

    splits = load_imagefolder(str(ds.root))
    assert splits.classnames == ["cat", "dog"] and len(splits.train) == 2 and len(splits.test) == 2


def test_skipped_members_may_have_long_names(tmp_path):
    z = _write(tmp_path / "ok.zip", [("cat/1.png", PNG), ("dog/1.png", PNG), (f"notes/{LONG}.txt", b"hi")])
    ds = extract_image_zip(z, tmp_path / "out")
    assert ds.classnames == ["cat", "dog"] and ds.skipped == [f"notes/{LONG}.txt"]


def test_model_panel_shows_pini_errors_and_a_generic_line_for_bugs(monkeypatch):
    import pini_core.backbone as engine_backbone

    spec = "ViT-B-32:/tmp/pini-app/run-1-ab/0123456789abcdef/x"
    msg = backbones.failure_message("embedded", ModelLoadError(f"missing {APP_TMP}/run-1-ab/0123456789abcdef/x/w.bin"))
    assert "missing w.bin" in msg and "pini-app" not in msg
    assert "Something went wrong on the server while loading it" in backbones.failure_message(
        spec, RuntimeError("secret /etc/shadow"))

    def broken(*a, **k):
        raise RuntimeError("internal /etc/shadow")

    monkeypatch.setattr(engine_backbone, "load_backbone", broken)
    with pytest.raises(RuntimeError):
        backbones.CACHE.load("RN50:openai-broken-test")
    assert backbones.CACHE.last_error("RN50:openai-broken-test") == backbones.GENERIC_LOAD_FAILURE
