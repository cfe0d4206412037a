"""Several processes through Hugging Face Accelerate (CPU, gloo): `accelerate launch` of the
same `python -m pini_core train` command. Both ranks end with identical weights, and they
match a one-process run with the same global batch (2 x 2 images vs 1 x 4).

CoOp is the method here because it is deterministic given the data order: PiNI draws its
noise from each process's own RNG, so a PiNI run on 2 processes is the same experiment in
distribution but not bit for bit (docs/ARCHITECTURE.md, "Several processes")."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["train", "--method", "coop", "--dataset", "toy-clutter", "--shots", "2", "--epochs", "2"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    env.pop("RANK", None), env.pop("WORLD_SIZE", None), env.pop("LOCAL_RANK", None)
    return env


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="the accelerate launcher is not installed")
def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    # `--multi_gpu` is accelerate's multi-process launcher (torchrun); with no GPU the
    # processes train on CPU over gloo (accelerate's `--cpu` flag alone starts one process).
    launch = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0", "-m", "pini_core"]
    p2 = subprocess.run(launch + ARGS + ["--batch-size", "2", "--out", str(two)], cwd=ROOT, env=_env(),
                        capture_output=True, text=True, timeout=600)
    assert p2.returncode == 0, p2.stderr[-3000:]
    p1 = subprocess.run([sys.executable, "-m", "pini_core"] + ARGS + ["--batch-size", "4", "--out", str(one)],
                        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert p1.returncode == 0, p1.stderr[-3000:]

    rec2 = json.loads((two / "result.json").read_text())
    assert rec2["info"]["processes"] == 2
    sums = rec2["info"]["rank_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]  # both ranks hold the same weights
    w2, w1 = load_file(str(two / "weights.safetensors")), load_file(str(one / "weights.safetensors"))
    assert sorted(w2) == sorted(w1) == ["ctx"]
    assert not torch.equal(w1["ctx"], torch.zeros_like(w1["ctx"]))
    torch.testing.assert_close(w2["ctx"], w1["ctx"], rtol=1e-4, atol=1e-5)
    # the logged loss is the global batch's (reduced over ranks), so the curves agree too
    l2 = [json.loads(x)["loss"] for x in (two / "metrics.jsonl").read_text().splitlines()]
    l1 = [json.loads(x)["loss"] for x in (one / "metrics.jsonl").read_text().splitlines()]
    assert l2 == pytest.approx(l1, rel=1e-4)
