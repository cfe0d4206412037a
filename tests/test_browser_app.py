"""A real browser on the real page: headless Chromium (Debian package `chromium`) driven by
Playwright. Screenshots go to results/browser/ (or $PINI_RESULTS_DIR/browser).

- results on open: with no click on any button, every tab (Noise, Classify, Prompt, MuNG)
  shows a computed result for its default example, with the example's TRUE label;
- phone (390x844): every tab button is visible (no "•••" menu), the dropdowns and the Table 8
  cells keep whole words;
- two students train at once (two browser contexts) and neither sees the other's generator;
- Stop races the end of a training 10 times: the final result is never overwritten;
- the page explains a model that cannot load.

`python -m tests.test_browser_app cold-start [N]` measures cold start (process start -> page
with results in every tab) N times and writes results/browser/cold_start.json.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.app_server import _free_port, running_app

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CANDIDATES = [os.environ.get("PINI_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
              shutil.which("chromium-browser")]
ROOT = Path(__file__).resolve().parent.parent


def find_chromium():
    for c in CANDIDATES:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium not found (looked at $PINI_CHROMIUM, /usr/bin/chromium, chromium and chromium-browser on "
           "PATH): install the Debian package with `apt-get install -y chromium` to run the browser test")

V_IMAGE_CNN = "raw image · CNN"  # noqa: F841 (the Train tab's raw-image choice)
TABS = {"noise": "Noise on images", "classify": "Classify", "prompt": "Prompt distribution",
        "mung": "MuNG (multimodal LLMs)", "train": "Train"}


def results_dir() -> Path:
    d = Path(os.environ.get("PINI_RESULTS_DIR") or ROOT / "results") / "browser"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def sync_api():
    return pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def app_url():
    with running_app("embedded") as url:
        yield url


@pytest.fixture(scope="module")
def browser(sync_api):
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _page(browser, **kw):
    ctx = browser.new_context(viewport=kw.pop("viewport", {"width": 1400, "height": 1000}), **kw)
    page = ctx.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    return ctx, page


def open_tab(page, key: str) -> None:
    page.get_by_role("tab", name=TABS[key], exact=True).click()


def expect_results_on_open(sync_api, page, timeout=120_000, shots: Path | None = None) -> dict:
    """With no click on any button: a result image and the true label in every tab. Returns the
    seconds (since the call) at which each tab's result was there."""
    expect, t0, seen = sync_api.expect, time.time(), {}
    sync_api.expect(page.locator("#model-status")).to_contain_text("Loaded:", timeout=timeout)
    open_tab(page, "noise")
    expect(page.locator("#noise-mu img")).to_be_visible(timeout=timeout)
    expect(page.locator("#noise-status")).to_contain_text("True label:", timeout=timeout)
    seen["noise"] = time.time() - t0
    if shots:
        page.screenshot(path=str(shots / "open_noise.png"), full_page=True)
    open_tab(page, "classify")
    expect(page.locator("#classify-spread img")).to_be_visible(timeout=timeout)
    expect(page.locator("#classify-status")).to_contain_text("True label:", timeout=timeout)
    expect(page.locator("#classify-example")).to_contain_text("true label", timeout=timeout)
    seen["classify"] = time.time() - t0
    if shots:
        page.screenshot(path=str(shots / "open_classify.png"), full_page=True)
    open_tab(page, "prompt")
    expect(page.locator("#prompt-table")).to_contain_text("photo", timeout=timeout)
    expect(page.locator("#prompt-status")).to_contain_text("draws", timeout=timeout)
    seen["prompt"] = time.time() - t0
    if shots:
        page.screenshot(path=str(shots / "open_prompt.png"), full_page=True)
    open_tab(page, "mung")
    expect(page.locator("#mung-attention img")).to_be_visible(timeout=timeout)
    expect(page.locator("#mung-strip img")).to_be_visible(timeout=timeout)
    expect(page.locator("#mung-example")).to_contain_text("true answer", timeout=timeout)
    expect(page.locator("#mung-after textarea")).to_have_value(re.compile("right|wrong"),
                                                               timeout=timeout)
    seen["mung"] = time.time() - t0
    if shots:
        page.screenshot(path=str(shots / "open_mung.png"), full_page=True)
    return seen


# ------------------------------------------------------------------------------------------
def test_every_tab_shows_a_result_and_the_true_label_on_open(sync_api, app_url, browser):
    shots = results_dir()
    ctx, page = _page(browser)
    try:
        page.goto(app_url, wait_until="domcontentloaded", timeout=60_000)
        expect_results_on_open(sync_api, page, shots=shots)
        # the right/wrong marks are computed, never written down: each matches the predictions
        open_tab(page, "classify")
        status = page.locator("#classify-status").inner_text()
        assert ("✓" in status or "✗" in status) and "fixes" in status and "breaks" in status, status
        # the Noise tab opens on Figure 4 when a raw-image generator is shipped
        from demo.shipped import shipped_image_folder

        open_tab(page, "noise")
        if shipped_image_folder() is not None:
            sync_api.expect(page.locator("#noise-status")).to_contain_text("raw-image", timeout=10_000)
            sync_api.expect(page.locator("#noise-noisy img")).to_be_visible()
    finally:
        ctx.close()
    assert (shots / "open_noise.png").stat().st_size > 20_000
    assert not page.errors, page.errors


def test_phone_layout_keeps_tabs_dropdowns_and_tables_usable(sync_api, app_url, browser):
    ctx, page = _page(browser, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                      device_scale_factor=2)
    try:
        page.goto(app_url, wait_until="domcontentloaded", timeout=60_000)
        sync_api.expect(page.locator("#model-status")).to_contain_text("Loaded:", timeout=120_000)
        tabs = page.get_by_role("tab")
        names = [t.inner_text().strip() for t in tabs.all() if t.is_visible()]
        for name in list(TABS.values()) + ["Learn π-noise"]:
            assert name in names, f"tab {name!r} is not visible on a phone: {names}"
        for t in tabs.all():  # nothing is cut with an ellipsis
            if t.is_visible():
                assert t.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), t.inner_text()
        page.screenshot(path=str(results_dir() / "phone_top.png"), full_page=False)
        # the example dropdown shows its whole value
        open_tab(page, "classify")
        box = page.locator("input[aria-label='Example image']:visible").first
        sync_api.expect(box).to_be_visible(timeout=30_000)
        assert box.evaluate("e => e.scrollWidth <= e.clientWidth + 2"), "the example name is cut"
        sync_api.expect(page.locator("#classify-status")).to_contain_text("True label:", timeout=120_000)
        page.screenshot(path=str(results_dir() / "phone_classify.png"), full_page=True)
        # Table 8: a cell holds a whole word on one line (the table scrolls sideways instead)
        open_tab(page, "prompt")
        sync_api.expect(page.locator("#prompt-table")).to_contain_text("photo", timeout=120_000)
        cell = page.locator("#prompt-table td").filter(has_text="photo").first
        h = cell.evaluate("e => e.getBoundingClientRect().height")
        line = cell.evaluate("e => parseFloat(getComputedStyle(e).lineHeight) || 20")
        assert h < 2.6 * line, f"a table cell wraps ({h:.0f} px high, line {line:.0f} px)"
        # k = 10: twelve columns scroll inside the table; the page itself never gets wider than the phone
        k = page.get_by_label("number input for k nearest words")
        k.fill("10")
        k.press("Tab")
        page.get_by_role("button", name="Decode the prompt noise").click()
        sync_api.expect(page.locator("#prompt-status")).to_contain_text("10 nearest words", timeout=60_000)
        sync_api.expect(page.locator("#prompt-table")).to_contain_text("10", timeout=10_000)
        assert page.evaluate("() => document.scrollingElement.scrollWidth") <= 391
        page.screenshot(path=str(results_dir() / "phone_prompt.png"), full_page=True)
    finally:
        ctx.close()
    assert not page.errors, page.errors


def _start_training(page, task: str, epochs: int, shots: int, visual: str | None = None, click: bool = True):
    open_tab(page, "train")
    box = page.get_by_label("Task", exact=True)
    box.click()
    page.get_by_role("option", name=task, exact=True).click()
    for label, value in (("number input for Epochs", epochs), ("number input for Shots per class", shots)):
        field = page.get_by_label(label)
        field.fill(str(value))
        field.press("Tab")
    if visual:
        box = page.get_by_label("Visual noise (location · generator)")
        box.click()
        page.get_by_role("option", name=visual).click()
    train = page.get_by_role("button", name="Train", exact=True)
    if click:
        train.click()
    return train


def test_two_students_train_at_once_and_keep_their_own_generators(sync_api, app_url, browser):
    pages = []
    try:
        for _ in range(2):
            pages.append(_page(browser))
        for _, page in pages:
            page.goto(app_url, wait_until="domcontentloaded", timeout=60_000)
            sync_api.expect(page.locator("#model-status")).to_contain_text("Loaded:", timeout=120_000)
        runs = [90, 100]  # epochs (feature noise, a few s each); they tell the two generators apart
        buttons = []
        for (_, page), n in zip(pages, runs):
            buttons.append(_start_training(page, "toy-clutter", epochs=n, shots=16, click=False))
            sync_api.expect(page.locator("#train-estimate")).to_contain_text("About", timeout=10_000)
        for b in buttons:  # both students press Train at (nearly) the same moment
            b.click()
        (_, a), (_, b) = pages
        sync_api.expect(a.locator("#train-status")).to_contain_text(re.compile(r"Epoch \d+/90"), timeout=120_000)
        sync_api.expect(b.locator("#train-status")).to_contain_text(re.compile(r"Epoch \d+/100"), timeout=120_000)
        # the second student is training while the first one still is: they run at once (no queue)
        assert "Finished" not in a.locator("#train-status").inner_text(), "the trainings ran one after the other"
        for _, page in pages:
            sync_api.expect(page.locator("#train-status")).to_contain_text("Finished", timeout=180_000)
        for i, ((_, page), n) in enumerate(zip(pages, runs)):
            mine, other = f"{n} epochs", f"{runs[1 - i]} epochs"
            gen = page.locator("#generator-status")
            sync_api.expect(gen).to_contain_text("trained here", timeout=10_000)
            sync_api.expect(gen).to_contain_text(mine)
            assert other not in gen.inner_text()  # never the other student's generator
            open_tab(page, "noise")  # "auto" shows the session's own generator
            page.get_by_role("button", name="Show the noise").click()
            sync_api.expect(page.locator("#noise-status")).to_contain_text(mine, timeout=60_000)
            assert other not in page.locator("#noise-status").inner_text()
            page.screenshot(path=str(results_dir() / f"two_students_{i + 1}.png"), full_page=True)
            assert not page.errors, page.errors
    finally:
        for ctx, _ in pages:
            ctx.close()


def test_stop_never_overwrites_the_final_result_10_times(sync_api, app_url, browser):
    ctx, page = _page(browser)
    outcomes = []
    try:
        page.goto(app_url, wait_until="domcontentloaded", timeout=60_000)
        sync_api.expect(page.locator("#model-status")).to_contain_text("Loaded:", timeout=120_000)
        _start_training(page, "toy-clutter", epochs=20, shots=16)
        status, note = page.locator("#train-status"), page.locator("#train-stop-note")
        stop = page.get_by_role("button", name="Stop (keep what was trained)")
        train = page.get_by_role("button", name="Train", exact=True)
        done = re.compile("Finished|Stopped early")
        notes = 0
        for i in range(10):
            if i:
                train.click()
            sync_api.expect(status).not_to_contain_text(done, timeout=60_000)  # this run has begun
            sync_api.expect(status).to_contain_text("Training on", timeout=60_000)
            # stop at different moments: right after the start, after the 1st epoch, at the last one
            if i % 3 == 1:
                sync_api.expect(status).to_contain_text(re.compile(r"Epoch \d+/20|Finished|Stopped"),
                                                        timeout=60_000)
            elif i % 3 == 2:
                sync_api.expect(status).to_contain_text(re.compile(r"Epoch (1[5-9]|20)/20|Finished|Stopped"), timeout=60_000)
            stop.click()
            try:  # Stop's reply has its own line; it can be gone again if the training ended meanwhile
                sync_api.expect(note).to_contain_text("Stopping", timeout=3_000)
                notes += 1
            except AssertionError:
                pass
            sync_api.expect(status).to_contain_text(done, timeout=60_000)
            time.sleep(0.5)  # a late Stop reply would land now
            final = status.inner_text()
            assert "Finished" in final or "Stopped early" in final, (i, final)
            assert "Stopping after the current step" not in final, (i, final)
            outcomes.append("stopped" if "Stopped early" in final else "finished")
        page.screenshot(path=str(results_dir() / "stop_race.png"), full_page=True)
    finally:
        ctx.close()
    assert len(outcomes) == 10
    # Stop's reply ("Stopping after the current step ...") has its own line (#train-stop-note), so it
    # never replaces the final result (the Train tab clears that line when a training ends)
    assert notes >= 1, "Stop never answered"
    (results_dir() / "stop_race.json").write_text(json.dumps({"outcomes": outcomes, "stop_replies_seen": notes}))
    # Gradio's line plot (Vega) throws this when a new run replaces a plot that is still being drawn
    # (runs back to back within a second); it changes nothing on the page
    errors = [e for e in page.errors if "reading 'offsetWidth'" not in e]
    assert not errors, errors


def test_browser_page_explains_a_model_that_cannot_load(sync_api, browser):
    with running_app("NoSuchNet-7:nothing") as url:
        ctx, page = _page(browser)
        try:
            page.goto(url, wait_until="domcontentloaded", timeout=60_000)
            status = page.locator("#model-status")
            sync_api.expect(status).to_contain_text("Could not load NoSuchNet-7:nothing", timeout=60_000)
            sync_api.expect(status).to_contain_text("Unknown open_clip model name")
            # the rest of the page still works: switch to the embedded model from the panel
            model_box = page.get_by_label("CLIP model", exact=False)
            model_box.fill("embedded")
            model_box.press("Enter")
            page.get_by_role("button", name="Load model").click()
            sync_api.expect(status).to_contain_text("Loaded:", timeout=60_000)
            page.screenshot(path=str(results_dir() / "model_failure_then_embedded.png"), full_page=True)
        finally:
            ctx.close()


# ------------------------------------------------------------------------------------------
def tab_latency(url: str) -> dict:
    """Seconds per tab for a result that is NOT precomputed (seed 1, the next example), through the
    same endpoints the buttons call (gradio_client: one new session)."""
    from gradio_client import Client

    from demo.examples import examples_for
    from demo.tab_mung import _examples

    c = Client(url, verbose=False)
    names = [n for n, _ in examples_for("embedded")]
    mung = _examples()[1]
    calls = {"noise": lambda: c.predict(names[1], None, 1, api_name="/noise_maps"),
             "classify": lambda: c.predict(names[1], None, "", "a photo of a {}.", 8, 1, api_name="/classify"),
             "prompt": lambda: c.predict(100, 5, 1, api_name="/prompt_distribution"),
             "mung": lambda: c.predict(mung[0], None, mung[2], 1, api_name="/mung")}
    out = {}
    for key, call in calls.items():
        t = time.time()
        call()
        out[key] = time.time() - t
    return out


def cold_start(runs: int = 3) -> dict:
    """Seconds from `python app.py` starting to the page showing results in every tab (and per-tab
    latency of a click), median over `runs` fresh processes; written to cold_start.json."""
    from playwright.sync_api import sync_playwright
    import playwright.sync_api as sync_api

    out = {"runs": []}
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for _ in range(runs):
        port = _free_port()
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/"
            import urllib.request

            while True:
                try:
                    urllib.request.urlopen(url, timeout=2).read()
                    break
                except Exception:  # noqa: BLE001 - not served yet
                    if proc.poll() is not None:
                        raise RuntimeError("app.py exited")
                    time.sleep(0.2)
            served = time.time() - t0
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                page = b.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url, wait_until="domcontentloaded", timeout=60_000)
                seen = expect_results_on_open(sync_api, page, timeout=180_000)
                ready = time.time() - t0
                b.close()
            lat = tab_latency(url)
            out["runs"].append({"served_s": served, "page_with_results_s": ready,
                                "tab_results_after_page_open_s": seen, "uncached_request_s": lat})
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    out["median_page_with_results_s"] = statistics.median(r["page_with_results_s"] for r in out["runs"])
    out["median_served_s"] = statistics.median(r["served_s"] for r in out["runs"])
    out["median_uncached_request_s"] = {k: statistics.median(r["uncached_request_s"][k] for r in out["runs"])
                                     for k in out["runs"][0]["uncached_request_s"]}
    (results_dir() / "cold_start.json").write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "cold-start":
    print(json.dumps(cold_start(int(sys.argv[2]) if len(sys.argv) > 2 else 3), indent=2))
