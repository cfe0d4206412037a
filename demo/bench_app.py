"""Benchmark the app: cold start of `python app.py` to a served page, then each tab's
response time on the embedded model, through the same API the browser uses.

    python -m pini_core app-bench [--repeats 3] [--out results/app_bench.json]

Not a test: it measures and reports (targets: cold start <= 15 s, each visualisation
<= 1 s, MuNG relevance maps <= 3 s). Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_page(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with code {proc.returncode} before serving the page")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200 and b"gradio" in r.read().lower():
                    return time.perf_counter() - t0
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no page at {url} after {timeout:.0f} s")


def _timed(fn, repeats: int):
    times = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "runs": [round(x, 3) for x in times]}, out


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Options of `python -m pini_core app-bench` (pini_core/cli.py COMMANDS)."""
    ap.description = __doc__.split("\n\n")[0]
    ap.add_argument("--repeats", type=int, default=3, help="calls per tab (the median is reported)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of the short training run")
    ap.add_argument("--out", default=str(REPO / "results" / "app_bench.json"), help="where to write the JSON")


def run(args) -> int:
    from gradio_client import Client

    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port))
    t_launch = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    results = {"cpu_count": os.cpu_count(), "torch_threads_env": os.environ.get("OMP_NUM_THREADS"),
               "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    try:
        results["cold_start_to_page_s"] = round(_wait_for_page(url, proc), 2)
        c = Client(url, verbose=False)
        t = time.perf_counter()
        c.predict("embedded", api_name="/load_model")
        results["first_model_load_s"] = round(time.perf_counter() - t, 2)
        results["cold_start_to_model_ready_s"] = round(time.perf_counter() - t_launch, 2)

        from demo.examples import examples_for
        from demo.tab_train import toy_tasks

        ex = [n for n, _ in examples_for("embedded")]
        from demo.shipped import shipped_task

        shipped = shipped_task()
        task = shipped if shipped in toy_tasks() else toy_tasks()[0]
        from pini_core.world.tasks import classnames_of

        classes = ", ".join(classnames_of(task))
        tabs = {}
        tabs["classify_zero_shot"], _ = _timed(
            lambda: c.predict(ex[0], None, classes, "a photo of a {}.", 16, 0, api_name="/classify"), args.repeats)
        for vis_label, key in (("raw image · CNN", "image"), ("visual feature · cross-attention (paper default)",
                                                              "feature")):
            t = time.perf_counter()
            job = c.submit(task, None, 4, args.epochs, 0.002, 1, vis_label,
                           "prompt embeddings · learnable (paper default)", api_name="/train")
            n_updates = len(list(job))
            job.result()
            tabs[f"train_{key}_{args.epochs}_epochs_4_shots"] = {"total_s": round(time.perf_counter() - t, 2),
                                                                 "updates": n_updates}
            tabs[f"noise_maps_{key}"], _ = _timed(lambda: c.predict(ex[0], None, 0, api_name="/noise_maps"),
                                                  args.repeats)
            tabs[f"classify_pini_{key}"], _ = _timed(
                lambda: c.predict(ex[0], None, "", "a photo of a {}.", 16, 0, api_name="/classify"), args.repeats)
        tabs["prompt_distribution_N100_k5"], _ = _timed(
            lambda: c.predict(100, 5, 0, api_name="/prompt_distribution"), args.repeats)
        tabs["pi_noise_meter"], _ = _timed(lambda: c.predict(8, 100, api_name="/pi_noise_meter"), args.repeats)
        api = c.view_api(return_format="dict", print_info=False)["named_endpoints"]
        if "/mung" in api:
            from demo.tab_mung import _examples

            name, _, q = _examples()[0]
            first, _ = _timed(lambda: c.predict(name, None, q, 0, api_name="/mung"), 1)
            tabs["mung_first_call_incl_loading"] = first
            tabs["mung_relevance_maps"], _ = _timed(lambda: c.predict(name, None, q, 0, api_name="/mung"),
                                                    args.repeats)
        else:
            tabs["mung"] = "not available in this installation"
        results["tabs"] = tabs
        results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, out)
    print(json.dumps(results, indent=2))
    print(f"written to {out}")
    return 0
