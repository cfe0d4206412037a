"""The Learn tab's π-noise meter, end to end through the app's API (gradio_client), checking
values against the engine computed independently in this process: four rows (no noise /
random noise of the same scale / learned with ε = 0 / learned sampled), the warning when
I > 0 but accuracy is unchanged, and the meter on a loaded checkpoint. Also the lesson and
the meter the page shows on load (no click), and the benchmark's protocol labels."""
from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path

import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from tests.app_server import running_app  # noqa: E402

V_FEATURE_CA = "visual feature · cross-attention (paper default)"
T_PROMPT = "prompt embeddings · learnable (paper default)"
UPLOAD = "my images (upload a zip below)"


@pytest.fixture(scope="module")
def url():
    with running_app("embedded") as u:
        yield u


@pytest.fixture(scope="module")
def bb(url):
    from demo import backbones

    return backbones.CACHE.load("embedded")  # the app's own backbone (same process)


def labels():
    from pini_core.analysis.meter import ROW_LABELS, ROWS

    return [ROW_LABELS[r] for r in ROWS]


def rows_of(table):
    """{row key: {column: value}} of the meter's table, checked for order and ranges."""
    from pini_core.analysis.meter import ROWS

    head, data = table["headers"], table["data"]
    assert [r[0] for r in data] == labels(), "the four rows, in order"
    rows = {key: dict(zip(head, r)) for key, r in zip(ROWS, data)}
    h_t = rows["none"]["H(T|ε) (nats)"]
    assert math.isfinite(h_t) and h_t >= 0
    assert rows["none"]["I(T, ε) (nats)"] == 0.0
    for key, r in rows.items():
        h, i, acc = r["H(T|ε) (nats)"], r["I(T, ε) (nats)"], r["accuracy (%)"]
        assert math.isfinite(h) and h >= 0, (key, h)
        assert i == pytest.approx(h_t - h, abs=2e-4), key  # Eq. 1, table rounded to 4 decimals
        assert 0.0 <= acc <= 100.0
        right, n = re.fullmatch(r"([0-9.]+) of (\d+)", r["images right"]).groups()
        assert float(right) == pytest.approx(acc * int(n) / 100, abs=0.06)
    return rows


def check_against_engine(rows, model, data, bb):
    """ε = 0 row = the model's `mean`-mode accuracy; no-noise row = zero-shot CLIP with PiNI's
    own prompts (accuracy and H(T) = its cross-entropy, Eq. 3), on the same images."""
    from pini_core.baselines.zeroshot import ZeroShotCLIP
    from pini_core.trainer import evaluate

    mean = evaluate(model, bb, data, mode="mean")
    assert rows["learned_mean"]["accuracy (%)"] == pytest.approx(mean["accuracy"], abs=0.006)
    assert rows["learned_mean"]["H(T|ε) (nats)"] == pytest.approx(mean["nll"], abs=2e-4)
    zs = evaluate(ZeroShotCLIP(bb, model.classnames, model.prompt_format), bb, data)
    assert rows["none"]["accuracy (%)"] == pytest.approx(zs["accuracy"], abs=0.006)
    assert rows["none"]["H(T|ε) (nats)"] == pytest.approx(zs["nll"], abs=2e-4)


def train(client, task, zip_path=None, shots=1, epochs=2, lr=0.002):
    job = client.submit(task, handle_file(str(zip_path)) if zip_path else None, shots, epochs, lr, 1, V_FEATURE_CA,
                        T_PROMPT, api_name="/train")
    final = job.result()
    assert "Finished" in final[0], final[0]
    return final


def checkpoint_files(final, folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    files = final[3]
    assert sorted(Path(f).name for f in files) == ["pini_config.json", "pini_generators.safetensors"]
    for f in files:
        (folder / Path(f).name).write_bytes(Path(f).read_bytes())
    return files


# ---------------------------------------------------------------------------------------
def test_four_rows_on_the_shipped_generator_agree_with_the_engine(url, bb):
    from demo.shipped import shipped_generator
    from pini_core.analysis.meter import balanced_subset

    c = Client(url, verbose=False)
    image, table, notes = c.predict(8, 200, api_name="/pi_noise_meter")
    rows = rows_of(table)
    model, label, test = shipped_generator(bb)
    data = balanced_subset(test, 200)
    check_against_engine(rows, model, data, bb)
    assert "200 held-out images" in notes and "8 noise draws" in notes
    # H(T) named as the paper defines it, with why it can exceed ln C and why I can be negative
    assert "cross-entropy" in notes and "Eq. 3" in notes and f"ln {len(model.classnames)}" in notes
    assert "negative" in notes
    # the visual CA's attention entropy and the share of images with the same top class
    assert re.search(r"mean entropy [0-9.]+ nats = [0-9.]+ × ln C; most attended class “\w+” for \d+ % of the "
                     r"images", notes)
    # the warning appears exactly when I > 0 while accuracy is unchanged
    base = rows["none"]["accuracy (%)"]
    same = [k for k in ("random", "learned_mean", "learned")
            if rows[k]["I(T, ε) (nats)"] > 1e-3 and abs(rows[k]["accuracy (%)"] - base) * 2 < 100 / 200]
    assert ("accuracy unchanged" in notes) == bool(same)
    with Image.open(image) as im:
        assert im.format == "PNG" and im.width > 600


def test_the_page_opens_with_the_lesson_and_the_same_meter(url, bb):
    """The page-load handler (no click) shows the six steps and the meter of the shipped
    generator with the numbers the API gives for the default settings."""
    from demo import tab_learn
    from demo.context import BuildContext
    from demo.session import SessionState

    out = tab_learn._on_load(BuildContext(session=None, default_spec="embedded"))(SessionState(backbone_spec="embedded"))
    steps, (image, table, notes) = out[:tab_learn.N_STEPS], out[tab_learn.N_STEPS:]
    for i, step in enumerate(steps, 1):
        assert step.startswith(f"**{i} · ")
    for eq in ("Eq. 1", "Eq. 3", "Eq. 5", "Eq. 13"):
        assert eq in "".join(steps)
    assert image.size[0] > 600 and "Eq. 3" in notes
    assert "1 epochs" not in "".join(steps) and "--" not in "".join(steps)  # grammar, no command-line flags
    api = Client(url, verbose=False).predict(tab_learn.DEFAULT_DRAWS, tab_learn.DEFAULT_IMAGES,
                                             api_name="/pi_noise_meter")[1]
    assert table.values.tolist() == api["data"]
    # step 3's numbers are the meter's learned row, step 4's the ε = 0 row
    learned = table.values.tolist()[3]
    assert f"I(T, ε) = **{learned[2]:+.3f} nats**" in steps[2]
    assert f"accuracy {table.values.tolist()[2][3]:.1f} %" in steps[3]


def test_warning_when_I_is_positive_but_accuracy_is_unchanged(url, tmp_path):
    """Two classes whose folders hold the same pictures: any classifier without random noise
    is right on exactly half of them, so the ε = 0 row's accuracy cannot move, while training
    makes CLIP's confident (wrong half the time) predictions less confident: I > 0."""
    from tests import app_badfiles as bad

    z = tmp_path / "same.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for split, seeds in (("train", range(0, 6)), ("val", range(20, 22)), ("test", range(40, 45))):
            for cls in ("circle", "square"):
                for s in seeds:
                    zf.writestr(f"{split}/{cls}/{s}.png", bad.png_bytes(bad.photo_like(s, 64)))
    c = Client(url, verbose=False)
    train(c, UPLOAD, zip_path=z, shots=4, epochs=30, lr=0.02)
    _, table, notes = c.predict(4, 10, api_name="/pi_noise_meter")
    rows = rows_of(table)
    assert rows["none"]["accuracy (%)"] == rows["learned_mean"]["accuracy (%)"] == 50.0
    assert rows["learned_mean"]["I(T, ε) (nats)"] > 1e-3, "training made the true class more probable"
    warning = next(line for line in notes.split("\n\n") if "Warning" in line)
    assert "accuracy unchanged (50.0 % with and without noise)" in warning and "learned, ε = 0 (μ only)" in warning


def test_meter_on_a_loaded_checkpoint(url, bb, tmp_path):
    from demo.tab_train import toy_tasks
    from pini_core.analysis.meter import balanced_subset, held_out_for
    from pini_core.checkpoint import load_pini

    task = "toy-colourcast" if "toy-colourcast" in toy_tasks() else toy_tasks()[0]
    first = Client(url, verbose=False)
    final = train(first, task, shots=1, epochs=2, lr=0.02)
    files = checkpoint_files(final, tmp_path / "ckpt")
    other = Client(url, verbose=False)  # a new session: only the checkpoint, no images of its task
    status = other.predict([handle_file(f) for f in files], api_name="/load_checkpoint")
    assert "loaded checkpoint" in str(status)
    _, table, notes = other.predict(4, 50, api_name="/pi_noise_meter")
    rows = rows_of(table)
    assert "loaded checkpoint" in notes and "50 held-out images" in notes
    model = load_pini(tmp_path / "ckpt", bb)
    data = balanced_subset(held_out_for(model), 50)
    assert {y for _, y in data} == set(range(len(model.classnames)))
    check_against_engine(rows, model, data, bb)
    # The session that trained on `task` loads a checkpoint of another toy task with the same
    # class names (the shipped one): the meter measures on *that* task's images.
    from demo.shipped import shipped_folder

    shipped = shipped_folder()
    if shipped is not None and shipped.name != task:
        first.predict([handle_file(str(shipped / n)) for n in ("pini_config.json", "pini_generators.safetensors")],
                      api_name="/load_checkpoint")
        rows = rows_of(first.predict(4, 50, api_name="/pi_noise_meter")[1])
        model = load_pini(shipped, bb)
        check_against_engine(rows, model, balanced_subset(held_out_for(model), 50), bb)


def test_meter_on_a_checkpoint_of_uploaded_images_says_what_to_do(url, tmp_path):
    from tests import app_badfiles as bad

    z = bad.class_zip(tmp_path / "colours.zip", classes=("red", "green"), per_class=6)
    final = train(Client(url, verbose=False), UPLOAD, zip_path=z, shots=2, epochs=1)
    files = checkpoint_files(final, tmp_path / "ckpt")
    other = Client(url, verbose=False)
    other.predict([handle_file(f) for f in files], api_name="/load_checkpoint")
    with pytest.raises(AppError, match="trained on images of its own") as e:
        other.predict(4, 10, api_name="/pi_noise_meter")
    assert "Traceback" not in str(e.value) and "data-" not in str(e.value)


def test_benchmark_sections_are_labelled_with_their_protocol_and_recipe(tmp_path, monkeypatch):
    import json

    from demo import bench_view

    monkeypatch.setattr(bench_view, "BENCH_DIR", tmp_path / "bench")
    for sub, cfg in (("", {"protocol": "reference", "recipe": "paper"}),
                     ("tuned", {"protocol": "tuned", "recipe": "paper", "lr_grid": [0.001, 0.01]})):
        d = tmp_path / "bench" / sub
        d.mkdir(parents=True, exist_ok=True)
        (d / "tables.md").write_text(f"# Benchmark results (measured)\n\nSetting: {sub or 'ref'}.\n\n"
                                     "| Shots | PiNI |\n|---|---:|\n| 1 | 50.0 |\n")
        (d / "meta.json").write_text(json.dumps({"description": f"Setting: {sub or 'ref'}.", "config": cfg}))
        Image.new("RGB", (8, 8)).save(d / "fig5_accuracy_vs_shots.png")
    sections, note = bench_view.bench_sections()
    assert note == "" and [s.protocol for s in sections] == ["reference", "tuned"]
    ref, tuned = sections
    assert ref.title.startswith("Reference protocol") and "recipe 'paper' (lr 0.002, 200 epochs)" in ref.title
    assert tuned.title.startswith("Tuned protocol") and "0.001, 0.01" in tuned.title
    assert ref.table_md.startswith("| Shots") and ref.description == "Setting: ref."
    assert bench_view.shots_word("| 1 shots | 2 shots |") == "| 1 shot | 2 shots |"
    # no tuned export yet: said plainly, the reference table still shown
    import shutil

    shutil.rmtree(tmp_path / "bench" / "tuned")
    sections, note = bench_view.bench_sections()
    assert [s.protocol for s in sections] == ["reference"] and "tuned-protocol table" in note
    assert "python -m" not in note and "--" not in note  # no command lines in the page's words


def test_the_train_tab_recipe_is_stated_next_to_the_tables():
    from demo.tab_learn import _recipes_note
    from pini_core.experiment import default_preset, preset_config

    from demo.bench_view import BenchSection

    r = preset_config(default_preset("embedded")).recipe
    ref = BenchSection(protocol="reference", title="", description="", table_md="|", recipe="paper")
    note = _recipes_note([ref])
    assert f"lr {r.lr:g}, {r.epochs} epochs" in note
    assert "the reference-protocol table trains PiNI with recipe 'paper' (lr 0.002, 200 epochs)" in note


def test_lesson_words_follow_the_numbers():
    """Steps say what the numbers say: a random noise that helps, or a meter that disagrees
    with accuracy, is reported as such."""
    from demo.tab_learn import lesson_steps

    def row(name, h, acc, n=100):
        return {"name": name, "H_T_given_eps": h, "I": 2.0 - h, "accuracy": acc, "correct": acc * n / 100}

    meter = {"none": row("none", 2.0, 40.0), "random": row("random", 1.5, 50.0),
             "learned_mean": row("learned_mean", 1.0, 40.0), "learned": row("learned", 1.0, 40.0),
             "draws": 8, "scale": {"visual": 1.0, "text": 0.0}, "parts": {}, "attention": None}
    lesson = {"meter": meter, "n": 100, "classes": ["a", "b"], "task": "toy-x", "task_description": "toy.",
              "zero_shot": {"template": "a photo of a {}.", "test": {"accuracy": 40.0, "H_T": 2.1, "n": 100},
                            "targets": {}},
              "noise": {"visual_location": "feature", "visual_generator": "mlp", "text_location": "none",
                        "text_generator": "le", "n_ctx": 0, "describe": ""},
              "recipe": {"last_loss": None}, "decode": None}
    steps = lesson_steps(lesson)
    assert "does it help?" in steps[1] and "here it does help" in steps[1]
    assert "disagree" in steps[2] and "changes nothing" in steps[2]
    assert "no noise to the prompt" in steps[5]
    assert all("1 epochs" not in s for s in steps)

