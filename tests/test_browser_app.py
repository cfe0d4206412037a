"""A real browser on the real page: headless Chromium (Debian package `chromium`) driven by
Playwright opens the app, trains a generator for a few epochs, shows its noise, and saves
a screenshot to results/browser/ (or $PINI_RESULTS_DIR)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.app_server import running_app

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CANDIDATES = [os.environ.get("PINI_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
              shutil.which("chromium-browser")]


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


def results_dir() -> Path:
    d = Path(os.environ.get("PINI_RESULTS_DIR") or Path(__file__).resolve().parent.parent / "results") / "browser"
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_browser_trains_and_shows_noise(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    shots = results_dir()
    with running_app("embedded") as url, sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                   headless=True, args=CHROMIUM_ARGS,
                                                   viewport={"width": 1400, "height": 1000})
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto(url, wait_until="domcontentloaded", timeout=60_000)
            status = page.locator("#model-status")
            sync_api.expect(status).to_contain_text("Loaded:", timeout=90_000)

            # Train: a raw-image generator for 2 epochs on the default toy task.
            page.get_by_role("tab", name="Train").click()
            epochs = page.get_by_label("number input for Epochs")
            epochs.fill("2")
            epochs.press("Tab")
            visual = page.get_by_label("Visual noise (location · generator)")
            visual.click()
            page.get_by_role("option", name="raw image · CNN").click()
            page.get_by_role("button", name="Train", exact=True).click()
            train_status = page.locator("#train-status")
            sync_api.expect(train_status).to_contain_text("Epoch 1/2", timeout=120_000)
            sync_api.expect(train_status).to_contain_text("Finished", timeout=120_000)
            sync_api.expect(page.locator("#generator-status")).to_contain_text("trained here", timeout=10_000)
            page.screenshot(path=str(shots / "train.png"), full_page=True)

            # Noise on images: the default example, Figure-4 style maps.
            page.get_by_role("tab", name="Noise on images").click()
            page.get_by_role("button", name="Show the noise").click()
            info = page.locator("#noise-info")
            sync_api.expect(info).to_contain_text("sigma", timeout=60_000)
            for key in ("raw", "noisy", "mu", "sigma"):
                sync_api.expect(page.locator(f"#noise-{key} img")).to_be_visible(timeout=30_000)
            sync_api.expect(page.locator("#noise-mu")).to_contain_text("μ heatmap")
            page.screenshot(path=str(shots / "noise.png"), full_page=True)
        finally:
            ctx.close()
    assert (shots / "noise.png").stat().st_size > 20_000
    assert not errors, errors


def test_browser_page_explains_a_model_that_cannot_load(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with running_app("NoSuchNet-7:nothing") as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
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
            browser.close()
