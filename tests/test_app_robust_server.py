"""Issue 12, the app half, through the running app's API (gradio_client = a REST session):
the model box refuses server paths and big builds (item 4), scratch folders are swept on
expiry and removed at shutdown (item 6), messages carry no server path (item 7), zip cases
get one clear line before any training (item 8)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from demo import backbones  # noqa: E402
from demo.session import APP_TMP, ENV_SESSION_TTL, ENV_SWEEP_EVERY  # noqa: E402
from tests import app_badfiles as bad  # noqa: E402
from tests.app_server import _free_port  # noqa: E402
from tests.test_app_robust_parts import ZIP_CASES  # noqa: E402

UPLOAD = "my images (upload a zip below)"
TTL = 4  # seconds: sessions idle this long lose their scratch folder


@pytest.fixture(scope="module")
def served():
    import torch

    from demo.build import build_app, launch_kwargs

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_SESSION_TTL, str(TTL))
        mp.setenv(ENV_SWEEP_EVERY, "0.3")
        for var in (backbones.ENV_ALLOW_DIR, backbones.ENV_ALLOW_MODELS, backbones.ENV_MAX_PARAMS_M,
                    backbones.ENV_ALLOW_HUB):
            mp.setenv(var, "-")
            mp.delenv(var)
        app = build_app("embedded")
        kw = launch_kwargs()
        kw.update(prevent_thread_lock=True, quiet=True, server_port=_free_port())
        _, url, _ = app.launch(**kw)
        try:
            yield app, url
        finally:
            app.close()
            torch.set_num_threads(threads)
            backbones._TORCH_CONFIGURED = False


def client(url) -> Client:
    return Client(url, verbose=False)


def train(c, task, zip_path=None, epochs=1):
    job = c.submit(task, handle_file(str(zip_path)) if zip_path else None, 1, epochs, 0.002, 1,
                   "visual feature · cross-attention (paper default)", "prompt embeddings · learnable (paper default)",
                   api_name="/train")
    return job.result()


def no_server_path(msg: str) -> None:
    assert "pini-app" not in msg and "/tmp/" not in msg and "gradio/" not in msg and "Traceback" not in msg, msg
    assert "Something went wrong" not in msg, msg


# ----- item 4 ---------------------------------------------------------------------------
def test_model_box_refuses_server_paths_with_one_message(served):
    _, url = served
    c = client(url)
    assert c.predict("embedded", api_name="/load_model")[0].startswith("**Loaded:**")
    shown = {}
    for spec in ("ViT-B-32:/etc/passwd", "ViT-B-32:/etc/no-such-file", "local-dir:/etc", "ViT-L-14:/etc/passwd"):
        status = c.predict(spec, api_name="/load_model")[0]
        assert status.startswith(f"**Not loaded: {spec}.** This app does not open files or folders on the server.")
        assert "Still using: Embedded toy CLIP" in status
        shown[spec] = status.replace(spec, "SPEC")
        assert backbones.CACHE.get_loaded(spec) is None and backbones.CACHE.last_error(spec) is None
    assert len(set(shown.values())) == 1  # an existing file and a missing one look the same
    # the session keeps its model
    from demo.examples import examples_for

    zs = c.predict(examples_for("embedded")[0][0], None, "a, b", "a photo of a {}.", 2, 0, api_name="/classify")
    assert sum(d["confidence"] for d in zs[0]["confidences"]) == pytest.approx(1.0, abs=1e-4)


def test_model_box_refuses_big_architectures_before_building(served):
    _, url = served
    c = client(url)
    t0 = time.time()
    status = c.predict("ViT-L-14:openai", api_name="/load_model")[0]
    assert status.startswith("**Not loaded: ViT-L-14:openai.** ViT-L-14 has about 427 M parameters; this app "
                             "builds models of up to 200 M for its visitors.")
    assert time.time() - t0 < 20 and backbones.CACHE.last_error("ViT-L-14:openai") is None
    status = c.predict("hf-hub:someone/model", api_name="/load_model")[0]
    assert "does not download models from the Hugging Face hub" in status


# ----- items 7 and 8 --------------------------------------------------------------------
@pytest.mark.parametrize("case, make, message", ZIP_CASES, ids=[c[0] for c in ZIP_CASES])
def test_zip_cases_through_the_train_endpoint(served, tmp_path, case, make, message):
    import warnings

    _, url = served
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z = make(tmp_path / "data.zip")
    with pytest.raises(AppError) as e:
        train(client(url), UPLOAD, z)
    assert str(e.value) == message  # one clear line, the user's names only
    no_server_path(str(e.value))


def test_a_broken_image_in_a_zip_is_named_as_in_the_zip(served, tmp_path):
    _, url = served
    z = tmp_path / "holiday photos.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("cat/ok.png", bad.png_bytes(bad.photo_like(1, 32)))
        f.writestr("dog/broken one.png", b"\x89PNG garbage")
    with pytest.raises(AppError) as e:
        train(client(url), UPLOAD, z)
    assert "'dog/broken one.png'" in str(e.value)
    no_server_path(str(e.value))
    with pytest.raises(AppError) as e:  # a broken single upload: its own name
        client(url).predict(None, handle_file(str(bad.corrupt_file(tmp_path / "my scan.png"))), "a, b",
                            "a photo of a {}.", 2, 0, api_name="/classify")
    assert "my scan.png" in str(e.value)
    no_server_path(str(e.value))


# ----- item 15 through the MuNG tab -------------------------------------------------------
def test_mung_tab_refuses_the_image_placeholder_and_names_unknown_words(served):
    from demo.tab_mung import _examples, _shipped_mung

    _, url = served
    c = client(url)
    if not _shipped_mung():  # no MuNG endpoint in an installation without the shipped generator
        assert "/mung" not in c.view_api(return_format="dict", print_info=False)["named_endpoints"]
        return
    name = _examples()[0][0]
    with pytest.raises(AppError) as e:
        c.predict(name, None, "what is <image> ?", 0, api_name="/mung")
    assert str(e.value).startswith("The question contains '<image>', which the model reserves")
    with pytest.raises(AppError) as e:
        c.predict(name, None, "what shape is it?", 0, api_name="/mung")
    assert str(e.value).startswith("The toy model does not know the word 'it' in the question 'what shape is it?'")
    no_server_path(str(e.value))


# ----- item 6 ---------------------------------------------------------------------------
def _sessions(app) -> set:
    root = app.scratch.root
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def test_rest_sessions_are_swept_after_the_ttl(served, tmp_path):
    app, url = served
    before = _sessions(app)
    junk = [tmp_path / "pini_generators.safetensors", tmp_path / "pini_config.json"]
    for p in junk:
        p.write_bytes(b"not a checkpoint")
    with pytest.raises(AppError) as e:  # fails after the session's folder was made: state never stored
        client(url).predict([handle_file(str(p)) for p in junk], api_name="/load_checkpoint")
    no_server_path(str(e.value))
    new = _sessions(app) - before
    assert len(new) == 1, new
    assert list((app.scratch.root / new.pop()).iterdir()) == []  # the checkpoint copy went right after loading
    deadline = time.time() + TTL + 10
    while _sessions(app) - before and time.time() < deadline:
        time.sleep(0.3)
    assert not (_sessions(app) - before), "an idle REST session's folder outlived its TTL"


def test_shutdown_removes_every_scratch_folder(served, tmp_path):
    app, url = served
    junk = [tmp_path / "pini_generators.safetensors", tmp_path / "pini_config.json"]
    for p in junk:
        p.write_bytes(b"not a checkpoint")
    with pytest.raises(AppError):
        client(url).predict([handle_file(str(p)) for p in junk], api_name="/load_checkpoint")
    root = app.scratch.root
    assert root.is_dir() and any(root.iterdir())
    app.close()
    assert not root.exists()


def test_app_py_cleans_up_on_sigterm(tmp_path):
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PINI_APP_THREADS="1")
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=Path(__file__).parent.parent,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 120
        while True:
            try:
                c = client(url)
                break
            except Exception:  # noqa: BLE001 - not serving yet
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError(f"app.py did not serve: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.5)
        junk = [tmp_path / "pini_generators.safetensors", tmp_path / "pini_config.json"]
        for p in junk:
            p.write_bytes(b"x")
        with pytest.raises(AppError):
            c.predict([handle_file(str(p)) for p in junk], api_name="/load_checkpoint")
        runs = list(APP_TMP.glob(f"run-{proc.pid}-*"))
        assert len(runs) == 1 and any(runs[0].iterdir())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not runs[0].exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

