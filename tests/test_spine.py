"""One spine: an experiment config, a method registry and `pini_core.run(config)`.

The CLI, the app's Train tab and a benchmark cell only translate their inputs into an
`ExperimentConfig`; the same config and seed through any of them give bit-identical weights."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pini_core.errors import ConfigError
from pini_core.experiment import ExperimentConfig, Recipe, preset_config

TASK, SHOTS, EPOCHS, SEED = "toy-clutter", 2, 3, 1
LR = preset_config("toy").recipe.lr  # the app's field must carry the preset's value for the configs to match


def test_config_round_trips_through_json_and_refuses_unknown_keys():
    cfg = preset_config("authors", method="pini", shots=4, dataset="oxford_pets", seed=3)
    again = ExperimentConfig.from_json(cfg.to_json())
    assert again == cfg and again.recipe.adam_betas == (0.9, 0.999) and again.noise.ca_scale is False
    d = json.loads(cfg.to_json())
    d["recipe"]["learning_rate"] = 1.0
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in recipe: \['learning_rate'\]"):
        ExperimentConfig.from_dict(d)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in experiment config: \['epochs'\]"):
        ExperimentConfig.from_dict({"epochs": 3})
    with pytest.raises(ConfigError, match="experiment config must be a JSON object, got list"):
        ExperimentConfig.from_json("[]")
    with pytest.raises(ConfigError, match="unknown key"):
        ExperimentConfig.from_dict({"noise": {"colour": "red"}})


@pytest.mark.parametrize("change, message", [
    ({"shots": -3}, "shots must be between 0 and"),
    ({"shots": 0}, "shots must be between 1 and 100000 for PiNI, got 0"),
    ({"seed": 10 ** 30}, "seed must be between 0 and 4294967295"),
    ({"recipe": Recipe(lr=0.0)}, "learning rate must be > 0"),
    ({"recipe": Recipe(epochs=0)}, "epochs must be between 1"),
    ({"recipe": Recipe(optimizer="adam")}, "optimizer must be one of"),
    ({"method": "prograd"}, "unknown method 'prograd'"),
])
def test_every_setting_is_checked_before_any_work(change, message):
    from pini_core.methods import check_config

    with pytest.raises(ConfigError, match=message):
        check_config(preset_config("toy").replace(**change))


def test_presets_differ_where_their_sources_do():
    paper, authors, toy = (preset_config(p, dataset="oxford_pets") for p in ("paper", "authors", "toy"))
    assert (paper.recipe.lr, paper.recipe.epochs, paper.noise.ca_scale, paper.eval.mode) == (2e-3, 200, True, "mean")
    assert (authors.recipe.lr, authors.recipe.epochs, authors.noise.ca_scale, authors.eval.mode) == (
        1e-3, 100, False, "single")
    assert authors.recipe.views() == 100 and authors.recipe.drop_last  # a fresh view each epoch, Dassl batches
    assert (toy.recipe.lr, toy.recipe.epochs, toy.recipe.augment) == (0.001, 100, False)
    assert preset_config("paper", dataset="imagenet").recipe.epochs == 100
    # baselines keep their reference recipes under every preset
    assert preset_config("toy", method="coop", shots=1).recipe == preset_config("paper", method="coop", shots=1).recipe


def test_registry_builds_every_method_through_one_protocol():
    from pini_core.backbone import load_backbone
    from pini_core.methods import Method, MethodContext, build_method, list_methods
    from pini_core.runner import fewshot, open_dataset

    bb = load_backbone("embedded", device="cpu")
    cfg = preset_config("toy", shots=1)
    data = fewshot(open_dataset(cfg), 1, 1)
    feats = torch.randn(3, bb.embed_dim)
    for name in list_methods():
        ctx = MethodContext(bb, data, cfg.replace(method=name), encode=lambda d, **kw: torch.randn(
            kw.get("views", 1), len(d), bb.embed_dim).squeeze(0))
        m = build_method(ctx)
        assert isinstance(m, Method), name
        if name == "linear_probe":
            continue  # predicts only after its closed-form fit
        logits = m.predict({"features": feats}, mode="mean", draws=2, generator=torch.Generator().manual_seed(0))
        assert logits.shape == (3, len(data.classnames)), name
    with pytest.raises(ConfigError, match=r"method 'coop' takes no option\(s\) \['ensemble'\]"):
        build_method(MethodContext(bb, data, cfg.replace(method="coop", options={"ensemble": True}), encode=None))


def _cli_weights(cfg: ExperimentConfig, tmp_path: Path) -> dict:
    from pini_core.cli import main

    path = tmp_path / "experiment.json"
    path.write_text(cfg.to_json())
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "cli")]) == 0
    saved = json.loads((tmp_path / "cli" / "checkpoint" / "pini_config.json").read_text())
    assert ExperimentConfig.from_dict(saved["experiment"]) == cfg  # the config travels with the checkpoint
    record = json.loads((tmp_path / "cli" / "result.json").read_text())
    assert ExperimentConfig.from_dict(record["config"]) == cfg  # ... and with every result row
    return load_file(str(tmp_path / "cli" / "checkpoint" / "pini_generators.safetensors"))


def _bench_weights(cfg_expected: ExperimentConfig, tmp_path: Path, monkeypatch) -> dict:
    import pini_core.runner as runner
    from pini_core.backbone import BackboneSpec
    from pini_core.bench.harness import Benchmark, BenchConfig

    bench = Benchmark(BenchConfig(methods=["pini"], datasets=[TASK], shots=[SHOTS], seeds=[SEED],
                                  backbones=[BackboneSpec("embedded", "embedded")], out_dir=str(tmp_path / "bench"),
                                  recipe="toy", epochs=EPOCHS, augment=False, progress=False))
    (cell,) = bench.plan()
    assert bench.cell_experiment(cell) == cfg_expected
    seen = {}
    real = runner.run

    def spy(config, **kw):
        res = real(config, **kw)
        seen["state"] = {k: v.detach().cpu().clone() for k, v in res.method.state_dict().items()}
        return res

    monkeypatch.setattr(runner, "run", spy)
    bench.run()
    assert bench.results.load()[0]["settings"]["experiment"]["method"] == "pini"
    return seen["state"]


def _app_weights(cfg_expected: ExperimentConfig, tmp_path: Path) -> dict:
    pytest.importorskip("gradio_client")
    from gradio_client import Client

    from demo.tab_train import TEXT, VISUAL, experiment_from_inputs
    from tests.app_server import running_app

    vis, txt = next(iter(k for k in VISUAL if "cross-attention" in k)), next(k for k in TEXT if "learnable" in k)
    assert experiment_from_inputs(TASK, SHOTS, EPOCHS, LR, SEED, vis, txt, "embedded") == cfg_expected
    with running_app("embedded") as url:
        job = Client(url, verbose=False).submit(TASK, None, SHOTS, EPOCHS, LR, SEED, vis, txt, api_name="/train")
        final = job.result()
    files = [Path(f) for f in final[3]]
    (weights,) = [f for f in files if f.suffix == ".safetensors"]
    return load_file(str(weights))


def test_one_config_through_cli_app_and_bench_gives_identical_weights(tmp_path, monkeypatch):
    cfg = preset_config("toy", shots=SHOTS, dataset=TASK, seed=SEED)
    cfg = cfg.replace(recipe=cfg.recipe.__class__(**{**cfg.recipe.to_dict(), "epochs": EPOCHS}))
    runs = {"cli": _cli_weights(cfg, tmp_path), "bench": _bench_weights(cfg, tmp_path, monkeypatch),
            "app": _app_weights(cfg, tmp_path)}
    ref = runs["cli"]
    assert ref and any(v.abs().sum() > 0 for v in ref.values())
    for name, state in runs.items():
        assert sorted(state) == sorted(ref), name
        for k, v in ref.items():
            assert torch.equal(state[k].cpu(), v), f"{name}: {k} differs"


def test_ctrl_c_keeps_the_last_finished_epoch(monkeypatch):
    """A KeyboardInterrupt in the middle of epoch 3 keeps the weights epoch 2 ended with."""
    from pini_core.backbone import load_backbone
    from pini_core.runner import run

    bb = load_backbone("embedded", device="cpu")
    cfg = preset_config("toy", shots=4, dataset=TASK).replace(recipe=Recipe(epochs=5, lr=0.02, augment=False,
                                                                            batch_size=8, eval_every=0))
    snapshots, calls = {}, {"n": 0}

    def on_epoch(row):
        snapshots[row["epoch"]] = {k: v.clone() for k, v in holder["m"].state_dict().items()}

    holder = {}
    import pini_core.methods as methods

    real_build = methods.build_method

    def build(ctx):
        m = real_build(ctx)
        holder["m"] = m
        real_loss = m.compute_loss

        def loss(inputs, labels):
            calls["n"] += 1
            if calls["n"] == 2 * 5 + 2:  # 5 steps per epoch (40 images, batch 8): 2nd step of epoch 3
                raise KeyboardInterrupt
            return real_loss(inputs, labels)
        m.compute_loss = loss
        return m

    import pini_core.runner as runner

    monkeypatch.setattr(runner, "build_method", build)
    res = run(cfg, backbone=bb, progress=False, evaluate_test=False, on_epoch=on_epoch)
    assert res.stopped and "Ctrl-C" in res.reason and len(res.history) == 2
    for k, v in snapshots[2].items():
        assert torch.equal(res.method.state_dict()[k], v), k


def test_top_level_api():
    import pini_core
    from pini_core import ExperimentConfig as E, NoiseConfig, PiNIModel, load_backbone, run  # noqa: F401

    assert E is ExperimentConfig and run.__module__ == "pini_core.runner"
    assert {"run", "ExperimentConfig", "NoiseConfig", "PiNIModel", "load_backbone"} <= set(dir(pini_core))
    with pytest.raises(AttributeError, match="no attribute 'train'"):
        pini_core.train  # noqa: B018


def test_schedules_follow_their_references():
    """cosine: CoOp-style over the epochs after warm-up; cosine_dassl: Dassl's
    ConstantWarmupScheduler + CosineAnnealingLR(T_max = E) (the authors' configs), which we
    step exactly as Dassl does to get the reference values."""
    import torch

    from pini_core.trainer import lr_at

    E, lr, w = 10, 2e-3, 1
    r = Recipe(epochs=E, lr=lr, warmup_epochs=w, schedule="cosine_dassl")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=E)
    expected = [1e-5]  # epoch 0: the constant warm-up epoch
    for _ in range(1, E):  # Dassl: after warm-up the successor starts at its own epoch 0 and steps per epoch
        expected.append(opt.param_groups[0]["lr"])
        cos.step()
    assert [lr_at(r, e) for e in range(E)] == pytest.approx(expected, rel=1e-12)
    plain = Recipe(epochs=E, lr=lr, warmup_epochs=w)
    assert lr_at(plain, E - 1) == pytest.approx(0.5 * lr * (1 + math.cos(math.pi * (E - 2) / (E - 1))))
    assert preset_config("authors").recipe.schedule == "cosine_dassl"


def test_a_checkpoints_config_and_a_result_json_both_load_with_config(tmp_path):
    """Newcomer case: `train --config CHECKPOINT/pini_config.json` (the experiment is inside)."""
    from pini_core.cli import main
    from pini_core.commands.train import add_arguments, config_from_args
    import argparse

    cfg = preset_config("toy", shots=1, dataset=TASK).replace(recipe=Recipe(epochs=1, lr=0.001, augment=False))
    (tmp_path / "c.json").write_text(cfg.to_json())
    assert main(["train", "--config", str(tmp_path / "c.json"), "--out", str(tmp_path / "run")]) == 0
    p = argparse.ArgumentParser()
    add_arguments(p)
    for source in (tmp_path / "run" / "checkpoint" / "pini_config.json", tmp_path / "run" / "result.json"):
        loaded = config_from_args(p.parse_args(["--config", str(source), "--seed", "2"]))
        assert loaded == cfg.replace(seed=2), source.name


def test_ctrl_c_in_the_cli_saves_then_exits_130(tmp_path, monkeypatch, capsys):
    """Newcomer case: Ctrl-C mid-training keeps the last finished epoch, saves it, and exits
    130 so `train && eval` does not carry on as if the run had finished."""
    import pini_core.trainer as trainer
    from pini_core.cli import main

    real = trainer._LossModule.forward
    calls = {"n": 0}

    def forward(self, inputs, labels):
        calls["n"] += 1
        if calls["n"] == 3 * 1 + 1:  # 10 images, batch 32: one step per epoch -> during epoch 4
            raise KeyboardInterrupt
        return real(self, inputs, labels)

    monkeypatch.setattr(trainer._LossModule, "forward", forward)
    rc = main(["train", "--dataset", TASK, "--shots", "1", "--epochs", "50", "--out", str(tmp_path / "r")])
    assert rc == 130
    record = json.loads((tmp_path / "r" / "result.json").read_text())
    assert record["stopped"] and record["epochs_done"] == 3 and "test_accuracy" in record["metrics"]
    assert "interrupted (Ctrl-C)" in capsys.readouterr().err
