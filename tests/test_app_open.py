"""Results on open and checkpoint provenance through the running app (gradio_client)."""
import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from tests.app_server import running_app  # noqa: E402


@pytest.fixture(scope="module")
def url():
    with running_app("embedded") as u:
        yield u


def test_default_results_are_precomputed_and_marked_against_the_true_label(url):
    from demo import preview
    from demo.examples import examples_for, true_label

    assert preview.wait_ready(180), "the start-up precomputation did not finish"
    assert preview.timings.get("total", 0) > 0
    c = Client(url, verbose=False)
    name = examples_for("embedded")[0][0]
    *_, info, status = c.predict(name, None, "", "a photo of a {}.", 8, 0, api_name="/classify")
    true = true_label(name)
    assert info["true_label"] == true and f"True label: **{true}**" in status
    for key in ("zero_shot", "mean", "single", "average"):  # each mark follows the real prediction
        pred = info["predictions"][key]
        mark = "✓" if pred == true else "✗"
        label = "zero-shot" if key == "zero_shot" else f"PiNI {key}"
        assert f"{label} **{pred}** {mark}" in status, (key, status)
    assert "fixes" in status and "breaks" in status
    *_, ninfo, nstatus = c.predict(name, None, 0, api_name="/noise_maps")
    assert ninfo["true_label"] == true and "True label" in nstatus


def test_a_loaded_checkpoint_shows_task_recipe_epochs_and_accuracy(url):
    from demo.shipped import shipped_folder
    from pini_core.checkpoint import read_config

    folder = shipped_folder()
    cfg = read_config(folder)
    c = Client(url, verbose=False)
    status = c.predict([handle_file(str(folder / "pini_generators.safetensors")),
                           handle_file(str(folder / "pini_config.json"))], api_name="/load_checkpoint")
    assert "loaded checkpoint" in status
    assert f"task {cfg['data']['dataset']}" in status
    assert f"{cfg['metrics']['epochs_done']} epochs" in status
    assert f"test accuracy {cfg['metrics']['test_accuracy']:.1f}%" in status
