"""The app, end to end: launched in-process on the embedded model and driven through its
API with gradio_client, checking values (not only that something came back)."""
from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from tests import app_badfiles as bad  # noqa: E402
from tests.app_server import running_app  # noqa: E402

UPLOAD = "my images (upload a zip below)"
V_FEATURE_CA = "visual feature · cross-attention (paper default)"
V_IMAGE_CNN = "raw image · CNN"
T_PROMPT = "prompt embeddings · learnable (paper default)"
T_NONE = "none"
ENDPOINTS = {"/load_model", "/load_checkpoint", "/noise_maps", "/classify", "/prompt_distribution",
             "/train", "/stop_training", "/pi_noise_meter"}


@pytest.fixture(scope="module")
def url():
    with running_app("embedded") as u:
        yield u


def new_client(url) -> Client:
    return Client(url, verbose=False)  # one client = one browser session


@pytest.fixture(scope="module")
def toy_task():
    from demo.tab_train import toy_tasks

    tasks = toy_tasks()
    assert tasks, "the toy tasks (pini_core.world.tasks) are missing"
    return "toy-colourcast" if "toy-colourcast" in tasks else tasks[0]


def train(client, task, *, zip_path=None, shots=2, epochs=2, visual=V_FEATURE_CA, text=T_PROMPT):
    job = client.submit(task, handle_file(zip_path) if zip_path else None, shots, epochs, 0.002, 1, visual, text,
                        api_name="/train")
    updates = list(job)
    final = job.result()  # raises AppError with the app's message when the run failed
    return job, updates, final


@pytest.fixture(scope="module")
def trained(url, toy_task):
    """A session whose generator puts noise on the raw image (CNN) and on the prompt."""
    c = new_client(url)
    job, updates, final = train(c, toy_task, shots=2, epochs=2, visual=V_IMAGE_CNN, text=T_PROMPT)
    assert "Finished" in final[0], final[0]
    # trained and zero-shot accuracy on the same test images, both real percentages
    accs = [float(x) for x in re.findall(r"(?:Test accuracy \(mean mode, \d+ images\)|Zero-shot CLIP on the same "
                                         r"images): ([0-9.]+)%", final[0])]
    assert len(accs) == 2 and all(0.0 < a <= 100.0 for a in accs), final[0]
    return c, final


def file_of(out):
    """An image output's file (outputs sent as gr.update arrive as dicts)."""
    return out["value"] if isinstance(out, dict) else out


def examples(url):
    from demo.examples import examples_for

    return [name for name, _ in examples_for("embedded")]


# ---------------------------------------------------------------------------------------
def test_every_tab_has_a_stable_endpoint(url):
    api = new_client(url).view_api(return_format="dict", print_info=False)
    assert ENDPOINTS <= set(api["named_endpoints"])


def test_page_is_served_and_files_outside_the_app_are_not(url):
    html = urllib.request.urlopen(url, timeout=10).read().decode()
    assert "gradio" in html.lower()
    repo_file = Path(__file__).resolve().parent.parent / "app.py"
    for target in ("/etc/passwd", str(repo_file), str(repo_file.parent / "checkpoints")):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{url.rstrip('/')}/gradio_api/file={target}", timeout=10)
        assert e.value.code in (403, 404)


def test_load_model_reports_success_and_failure_keeps_the_app_working(url):
    c = new_client(url)
    status = c.predict("embedded", api_name="/load_model")[0]
    assert status.startswith("**Loaded:**") and "embedding size" in status
    status = c.predict("NoSuchNet-99:nothing", api_name="/load_model")[0]
    assert "Could not load" in status and "Unknown open_clip model name" in status
    assert "Still using" in status and "Traceback" not in status
    # the session still works on the embedded model
    zs = c.predict(examples(url)[0], None, "circle, square, triangle", "a photo of a {}.", 4, 0,
                   api_name="/classify")[0]
    assert len(zs["confidences"]) == 3


def test_a_real_backbone_session_gets_licensed_photographs(url, monkeypatch):
    from demo.backbones import ENV_ALLOW_DIR
    from pini_core.backbone import embedded_dir

    monkeypatch.setenv(ENV_ALLOW_DIR, str(embedded_dir()))  # visitors' local paths need the operator's consent
    c = new_client(url)
    out = c.predict(f"local-dir:{embedded_dir()}", api_name="/load_model")  # same weights, as a real backbone
    status, dropdowns = out[0], out[2:]
    assert status.startswith("**Loaded:**") and "public domain" in status and "CC0" in status
    names = [ch[0] for ch in dropdowns[0]["choices"]]
    assert names == ["astronaut (Eileen Collins)", "cat (Chelsea)", "coffee cup", "rocket launch (Falcon 9)"]
    zs = c.predict(names[1], None, "astronaut, cat, coffee, rocket", "a photo of a {}.", 4, 0,
                   api_name="/classify")[0]
    assert sum(d["confidence"] for d in zs["confidences"]) == pytest.approx(1.0, abs=1e-4)
    other = new_client(url)  # another session still opens on the embedded model's examples
    with pytest.raises(AppError, match="not in the list of choices"):
        other.predict(names[1], None, "a, b", "a photo of a {}.", 4, 0, api_name="/classify")


def test_zero_shot_probabilities_sum_to_one_and_follow_the_image(url):
    c = new_client(url)
    names = examples(url)
    assert len(names) >= 2, "assets/examples should hold the toy example images"
    from pini_core.world.tasks import classnames_of

    classes = ", ".join(classnames_of("toy-shapes"))
    outs = [c.predict(n, None, classes, "a photo of a {}.", 4, 0, api_name="/classify") for n in names[:2]]
    probs = []
    for zs, p_mean, p_single, p_avg, spread, info, status in outs:
        conf = {d["label"]: d["confidence"] for d in zs["confidences"]}
        assert set(conf) == set(classnames_of("toy-shapes"))
        assert sum(conf.values()) == pytest.approx(1.0, abs=1e-4)
        # this session trained nothing: PiNI is the generator shipped for the embedded model
        pm = {d["label"]: d["confidence"] for d in p_mean["confidences"]}
        assert sum(pm.values()) == pytest.approx(1.0, abs=1e-4)
        probs.append(np.array([conf[k] for k in sorted(conf)]))
    assert not np.allclose(probs[0], probs[1], atol=1e-4)


def test_pini_probabilities_for_every_mode_and_the_spread(trained, url):
    c, _ = trained
    zs, p_mean, p_single, p_avg, spread, info, status = c.predict(examples(url)[0], None, "", "a photo of a {}.", 8, 3,
                                                                  api_name="/classify")
    for lab in (zs, p_mean, p_single, p_avg):
        assert sum(d["confidence"] for d in lab["confidences"]) == pytest.approx(1.0, abs=1e-4)
    assert len(p_mean["confidences"]) == 10 and info["draws"] == 8
    # the average over draws is the mean of per-draw softmaxes: between single draws' extremes
    assert set(info["spread_std"]) == set(info["mean"])
    assert max(info["spread_std"].values()) > 0  # the noise really varies between draws
    img = np.asarray(Image.open(spread))
    assert img.ndim == 3 and img.shape[0] > 100


def test_noise_maps_differ_between_images_and_follow_the_seed(trained, url):
    c, _ = trained
    a, b = examples(url)[:2]
    ra = c.predict(a, None, 0, api_name="/noise_maps")
    rb = c.predict(b, None, 0, api_name="/noise_maps")
    ra2 = c.predict(a, None, 0, api_name="/noise_maps")
    ra_seed = c.predict(a, None, 1, api_name="/noise_maps")
    raw, noisy, mu, sigma = (file_of(x) for x in ra[:4])
    info = ra[4]
    assert info["kind"] == "image" and info["seed"] == 0
    for p in (raw, noisy, mu, sigma):
        assert Path(p).exists()
    mu_a, mu_b = np.asarray(Image.open(mu)), np.asarray(Image.open(file_of(rb[2])))
    assert mu_a.shape == mu_b.shape and np.abs(mu_a.astype(int) - mu_b.astype(int)).mean() > 1.0
    assert info["mu"] != rb[4]["mu"] and info["sigma"] != rb[4]["sigma"]
    assert info["sigma"]["min"] >= 0  # sigma is a standard deviation
    # the same seed gives the same draw, another seed another one (mu/sigma do not depend on it)
    assert ra2[4]["noise"] == info["noise"]
    assert ra_seed[4]["noise"] != info["noise"] and ra_seed[4]["mu"] == info["mu"]
    noisy_a, raw_a = np.asarray(Image.open(noisy)), np.asarray(Image.open(raw))
    assert noisy_a.shape == raw_a.shape and not np.array_equal(noisy_a, raw_a)


def test_prompt_distribution_lists_real_tokens(trained):
    c, _ = trained
    n, k = 40, 4
    table, status = c.predict(n, k, 0, api_name="/prompt_distribution")
    rows = table["data"]
    assert [r[1] for r in rows] == ["a", "photo", "of", "a"]  # the toy tasks' template "a photo of a {}."
    assert table["headers"] == ["position", "template word", "1", "2", "3", "4"]
    from pini_core.backbone import load_backbone  # the vocabulary the words must come from

    bb = load_backbone("embedded")
    vocab = {bb.decode_token(i) for i in range(bb.token_embedding.shape[0])}
    for r in rows:
        counts = []
        for cell in r[2:]:
            m = re.fullmatch(r"(.+) \((\d+)\)", cell)
            assert m, cell
            assert m.group(1) in vocab
            counts.append(int(m.group(2)))
        assert all(1 <= x <= n for x in counts) and counts == sorted(counts, reverse=True)
        assert r[1] in [re.fullmatch(r"(.+) \(\d+\)", cell).group(1) for cell in r[2:]]


def test_pi_noise_meter(trained):
    # the meter's four rows in detail: tests/test_app_meter.py
    from pini_core.analysis.meter import ROW_LABELS, ROWS

    c, _ = trained
    plot, table, notes = c.predict(2, 30, api_name="/pi_noise_meter")
    assert "30 held-out images" in notes and Path(plot).read_bytes()[:4] == b"\x89PNG"
    rows = {r[0]: r for r in table["data"]}
    assert list(rows) == [ROW_LABELS[k] for k in ROWS]
    h_t = rows[ROW_LABELS["none"]][1]
    assert h_t > 0 and rows[ROW_LABELS["none"]][2] == 0.0
    for r in rows.values():
        assert r[2] == pytest.approx(h_t - r[1], abs=1e-3)  # I = H(T) - H(T|eps)


def test_training_streams_stops_on_request_and_yields_a_loadable_checkpoint(url, tmp_path):
    c = new_client(url)
    z = bad.class_zip(tmp_path / "colours.zip", classes=("red", "green", "blue"), per_class=8)
    # noise on the raw image: every step runs the image tower, so 200 epochs outlast the checks below
    job = c.submit(UPLOAD, handle_file(str(z)), 2, 200, 0.002, 1, V_IMAGE_CNN, T_PROMPT, api_name="/train")
    epochs_seen = []
    for update in job:
        m = re.search(r"Epoch (\d+)/200", update[0] or "")
        if m:
            epochs_seen.append(int(m.group(1)))
            if len(epochs_seen) == 1:  # training holds its own worker: other tabs are still served
                other = new_client(url)
                zs = other.predict(examples(url)[0], None, "a, b", "a photo of a {}.", 2, 0, api_name="/classify")[0]
                assert len(zs["confidences"]) == 2 and not job.done()
            if len(epochs_seen) == 2:
                assert "Stopping" in c.predict(api_name="/stop_training")
    final = job.outputs()[-1]
    # one update per redraw: epochs that finish together are shown together, in order
    assert len(epochs_seen) >= 2 and epochs_seen == sorted(set(epochs_seen)) and epochs_seen[0] <= 2
    assert "Stopped early" in final[0] and max(epochs_seen) < 200
    loss = final[1]["data"]
    assert len(loss) == max(epochs_seen) and all(np.isfinite(r[1]) for r in loss)
    files = final[3]
    assert sorted(Path(f).name for f in files) == ["pini_config.json", "pini_generators.safetensors"]
    # the checkpoint loads, in the engine and back into a new session of the app
    from pini_core.backbone import load_backbone
    from pini_core.checkpoint import load_pini

    folder = tmp_path / "ckpt"
    folder.mkdir()
    for f in files:
        (folder / Path(f).name).write_bytes(Path(f).read_bytes())
    model = load_pini(folder, load_backbone("embedded"))
    assert model.classnames == ["blue", "green", "red"]
    other = new_client(url)
    status = other.predict([handle_file(f) for f in files], api_name="/load_checkpoint")
    assert "loaded checkpoint" in status and "blue, green, red" in status


def test_generators_without_the_needed_noise_explain_themselves(url, toy_task):
    c = new_client(url)
    train(c, toy_task, shots=1, epochs=1, visual="none", text=T_PROMPT)
    *_, info, status = c.predict(examples(url)[0], None, 0, api_name="/noise_maps")
    assert info["kind"] == "none" and "adds no visual noise" in status
    train(c, toy_task, shots=1, epochs=1, visual=V_FEATURE_CA, text=T_NONE)
    with pytest.raises(AppError, match="prompt word embeddings"):
        c.predict(20, 3, 0, api_name="/prompt_distribution")
    *_, info, status = c.predict(examples(url)[0], None, 0, api_name="/noise_maps")
    assert info["kind"] == "feature" and 0 < info["cosine_clean_vs_noisy"] <= 1 and info["shift_norm"] > 0
    attn = info["generator_attention_over_classes"]
    assert len(attn) == 10 and sum(attn.values()) == pytest.approx(1.0, abs=1e-3)


def test_sessions_do_not_share_generators(trained, url):
    c, _ = trained
    fresh = new_client(url)
    # a fresh session sees the generator shipped with the embedded model, never another session's
    _, fresh_status = fresh.predict(10, 2, 0, api_name="/prompt_distribution")
    _, own_status = c.predict(10, 2, 0, api_name="/prompt_distribution")
    assert "shipped generator" in fresh_status
    assert "shipped generator" not in own_status


BAD_IMAGES = [
    ("corrupt.png", bad.corrupt_file, "corrupt"),
    ("dot.png", bad.tiny_png, "1x1"),
    ("huge.png", bad.huge_png, "megapixels"),
]


@pytest.mark.parametrize("name, make, words", BAD_IMAGES)
def test_bad_image_uploads_get_a_clear_message(url, tmp_path, name, make, words):
    c = new_client(url)
    path = make(tmp_path / name)
    with pytest.raises(AppError) as e:
        c.predict(None, handle_file(str(path)), "cat, dog", "a photo of a {}.", 4, 0, api_name="/classify")
    msg = str(e.value)
    assert words in msg and name in msg
    assert "Traceback" not in msg and "Something went wrong" not in msg


@pytest.mark.parametrize("name, make", [("cmyk.jpg", bad.cmyk_jpeg), ("grey16.png", bad.png16),
                                        ("anim.gif", bad.animated_gif)])
def test_awkward_valid_uploads_are_classified(url, tmp_path, name, make):
    c = new_client(url)
    path = make(tmp_path / name)
    zs, *_, info, status = c.predict(None, handle_file(str(path)), "cat, dog", "a photo of a {}.", 4, 0,
                                     api_name="/classify")
    assert sum(d["confidence"] for d in zs["confidences"]) == pytest.approx(1.0, abs=1e-4)
    assert info["image"] == "your upload"


@pytest.mark.parametrize("make, words", [
    (bad.zip_without_images, "contains no images"),
    (bad.zip_escaping, "escapes its folder"),
    (bad.zip_with_symlink, "symbolic link"),
])
def test_bad_zips_get_a_clear_message(url, tmp_path, make, words):
    c = new_client(url)
    z = make(tmp_path / "data.zip")
    with pytest.raises(AppError) as e:
        train(c, UPLOAD, zip_path=str(z), epochs=1)
    assert words in str(e.value) and "Traceback" not in str(e.value)


def test_bad_form_values_get_a_clear_message(url):
    c = new_client(url)
    with pytest.raises(AppError, match="not in the list of choices"):  # names, never paths
        c.predict("/etc/passwd", None, "a, b", "a photo of a {}.", 4, 0, api_name="/classify")
    with pytest.raises(AppError, match="exactly one {}"):
        c.predict(examples(url)[0], None, "a, b", "no placeholder", 4, 0, api_name="/classify")
    with pytest.raises(AppError, match="Upload a zip"):
        train(c, UPLOAD, epochs=1)
    with pytest.raises(AppError, match="at least one place"):
        train(c, "toy-shapes", epochs=1, visual="none", text=T_NONE)


def test_mung_tab_explains_or_says_plainly_that_it_cannot(url):
    from demo.tab_mung import _examples, _shipped_mung

    c = new_client(url)
    api = c.view_api(return_format="dict", print_info=False)["named_endpoints"]
    if not _shipped_mung():  # no trained MuNG generator in this installation: no endpoint, no fake output
        assert "/mung" not in api
        return
    name, _, question = _examples()[0]
    attn, before, after, strip, ans_before, ans_after, info = c.predict(name, None, question, 0, api_name="/mung")
    imgs = [np.asarray(Image.open(p)) for p in (attn, before, after, strip)]
    assert all(i.ndim == 3 and i.shape[0] > 100 for i in imgs)
    assert not np.array_equal(imgs[1], imgs[2])  # the noise changes the relevance map
    assert info["relevance_change_abs_mean"] > 0
    words = [w.strip("?") for w in question.split() if w.strip("?")]
    assert all(w in info["generator key words"] for w in words)  # the generator attends to the question's words
    assert isinstance(ans_before, str) and isinstance(ans_after, str)
    same = c.predict(name, None, question, 0, api_name="/mung")[6]
    assert same["relevance_after_sum"] == pytest.approx(info["relevance_after_sum"], rel=1e-5)  # same ε, same map
    with pytest.raises(AppError, match="Type a question"):
        c.predict(name, None, "   ", 0, api_name="/mung")
