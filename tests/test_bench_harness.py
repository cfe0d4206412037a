"""Harness: every method runs through it, finished cells are never recomputed, a
stopped run keeps its finished cells, the CLI rebuilds tables from the results file."""
import argparse
import json

import pytest
import torch

from pini_core.bench import cli
from pini_core.bench.harness import BackboneSpec, Benchmark, BenchConfig, BenchError, Cell
from pini_core.bench.results import ResultsFile
from pini_core.bench.testing import colour_dataset, tiny_backbone

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def bb():
    return tiny_backbone()


@pytest.fixture(scope="module")
def datasets():
    return {"colours": colour_dataset("colours", targets=["dark"]),
            "colours4": colour_dataset("colours4", num_classes=4, seed=3)}


def make(tmp_path, bb, datasets, **kw):
    base = dict(methods=["zeroshot", "linear_probe", "coop"], datasets=["colours"], shots=[1], seeds=[1, 2],
                backbones=[BackboneSpec("tiny", "tiny")], out_dir=str(tmp_path / "out"), epochs=1, progress=False)
    base.update(kw)
    bench = Benchmark(BenchConfig(**base), backbone_loader=lambda spec: bb, dataset_loader=lambda n: datasets[n])
    calls = []
    inner = bench.run_cell

    def counted(cell):
        calls.append(cell)
        return inner(cell)

    bench.run_cell = counted
    return bench, calls


def test_every_method_trains_and_evaluates(tmp_path, bb, datasets):
    methods = ["zeroshot", "linear_probe", "coop", "clip_adapter", "tip_adapter", "tip_adapter_f", "pini"]
    bench, calls = make(tmp_path, bb, datasets, methods=methods, seeds=[1], epochs=2)
    summary = bench.run()
    assert summary["finished"] == 7 and summary["remaining"] == 0 and not summary["interrupted"]
    recs = {r["method"]: r for r in bench.results.load()}
    assert sorted(recs) == sorted(methods)
    n_test = len(datasets["colours"].test)
    for m, r in recs.items():
        assert 0.0 <= r["accuracy"] <= 100.0
        # accuracy is a multiple of 100/n_test: it was measured on the whole test set
        assert abs(r["accuracy"] * n_test / 100 - round(r["accuracy"] * n_test / 100)) < 1e-6
        assert set(r["targets"]) == {"dark"}, m  # domain-generalisation target evaluated
        assert r["n_test"] == n_test and r["model"] == "last epoch"
    assert recs["zeroshot"]["shots"] == 0 and recs["zeroshot"]["n_train"] == 0
    assert recs["coop"]["n_train"] == 3 and recs["coop"]["epochs_run"] == 2
    assert recs["pini"]["epochs_run"] == 2 and recs["pini"]["eval_mode"] == "mean"
    assert recs["tip_adapter_f"]["epochs_run"] == 2
    assert recs["linear_probe"]["val_search"]["C"] > 0
    assert {"alpha", "beta"} <= set(recs["tip_adapter"]["val_search"])


def test_resume_skips_finished_cells(tmp_path, bb, datasets):
    bench, calls = make(tmp_path, bb, datasets)
    assert len(bench.plan()) == 5  # zero-shot once + 2 methods x 1 shot x 2 seeds
    bench.run()
    assert len(calls) == 5
    path = bench.results.path
    before = path.read_bytes()

    again, calls2 = make(tmp_path, bb, datasets)
    summary = again.run()
    assert calls2 == [] and summary["done_before"] == 5 and summary["finished"] == 0
    assert path.read_bytes() == before  # nothing rewritten, timestamps unchanged

    more, calls3 = make(tmp_path, bb, datasets, seeds=[1, 2, 3])
    more.run()
    assert [(c.method, c.seed) for c in calls3] == [("linear_probe", 3), ("coop", 3)]
    assert path.read_bytes().startswith(before) and len(bench.results.load()) == 7


def test_changed_settings_are_new_cells(tmp_path, bb, datasets):
    bench, calls = make(tmp_path, bb, datasets, methods=["coop"], seeds=[1])
    bench.run()
    other, calls2 = make(tmp_path, bb, datasets, methods=["coop"], seeds=[1], epochs=2)
    other.run()
    assert len(calls2) == 1  # another epoch count is another cell, never a silent reuse
    recs = bench.results.load()
    assert [r["settings"]["recipe"]["epochs"] for r in recs] == [1, 2]
    assert recs[0]["config"] != recs[1]["config"]


def test_keyboard_interrupt_keeps_finished_cells(tmp_path, bb, datasets):
    bench, calls = make(tmp_path, bb, datasets)
    inner = bench.run_cell

    def stop_on_third(cell):
        if len(calls) == 2:  # two cells finished: Ctrl-C during the third
            raise KeyboardInterrupt
        return inner(cell)

    bench.run_cell = stop_on_third
    summary = bench.run()
    assert summary["interrupted"] and summary["finished"] == 2 and summary["remaining"] == 3
    first = bench.results.load()
    assert len(first) == 2

    resumed, calls2 = make(tmp_path, bb, datasets)
    resumed.run()
    assert len(calls2) == 3  # only the unfinished cells
    recs = resumed.results.load()
    assert recs[:2] == first and len(recs) == 5


def test_stop_request_inside_training_is_not_recorded(tmp_path, bb, datasets):
    bench, calls = make(tmp_path, bb, datasets, methods=["coop"], seeds=[1])
    bench.stop_event.set()  # the trainer stops after its first batch
    summary = bench.run()
    assert summary["interrupted"] and summary["finished"] == 0
    assert bench.results.load() == []  # a half-trained cell is never stored


def test_max_cells_then_continue(tmp_path, bb, datasets):
    bench, calls = make(tmp_path, bb, datasets, max_cells=2)
    summary = bench.run()
    assert summary["stopped_at_limit"] and len(calls) == 2 and len(bench.results.load()) == 2
    rest, calls2 = make(tmp_path, bb, datasets)
    rest.run()
    assert len(calls2) == 3


def test_truncated_last_line_is_ignored_and_repaired(tmp_path, bb, datasets):
    bench, calls = make(tmp_path, bb, datasets, methods=["zeroshot", "linear_probe"], seeds=[1])
    bench.run()
    with open(bench.results.path, "ab") as f:
        f.write(b'{"method": "linear_probe", "dataset": "col')  # a write cut off by a crash
    again, calls2 = make(tmp_path, bb, datasets, methods=["zeroshot", "linear_probe"], seeds=[1, 2])
    with pytest.warns(UserWarning, match="truncated last line"):
        again.run()
    assert [(c.method, c.seed) for c in calls2] == [("linear_probe", 2)]
    lines = again.results.path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x) for x in lines)


def test_restricted_targets_follow_meta_target_classes(tmp_path, bb, datasets):
    import dataclasses

    ds = datasets["colours"]
    # the target holds only class 0: restricted to class {0} every prediction is right
    only0 = [(x, y) for x, y in ds.targets["dark"] if y == 0]
    restricted = dataclasses.replace(ds, targets={"dark": only0}, meta={"target_classes": {"dark": [0]}})
    bench, _ = make(tmp_path, bb, {"colours": restricted}, methods=["zeroshot"])
    bench.run()
    assert bench.results.load()[0]["targets"]["dark"] == 100.0


def test_config_errors_are_clear(tmp_path, bb, datasets):
    with pytest.raises(BenchError, match="unknown method"):
        make(tmp_path, bb, datasets, methods=["cooop"])
    with pytest.raises(BenchError, match="shots must be integers >= 1"):
        make(tmp_path, bb, datasets, shots=[0])
    with pytest.raises(BenchError, match="--epochs must be >= 1"):
        make(tmp_path, bb, datasets, epochs=0)
    with pytest.raises(BenchError, match="--pini-noise: visual_location must be one of"):
        make(tmp_path, bb, datasets, pini_noise={"visual_location": "nowhere"})
    assert BackboneSpec.parse("ViT-B-16:openai") == BackboneSpec("ViT-B-16:openai", "ViT-B-16", "openai")
    assert BackboneSpec.parse("ViT-B-16:openai=ViT-B-16:/w/b16.pt") == BackboneSpec(
        "ViT-B-16:openai", "ViT-B-16", "/w/b16.pt")
    assert BackboneSpec.parse("local-dir:/m/x") == BackboneSpec("local-dir:/m/x", "local-dir:/m/x", None)
    assert BackboneSpec.parse("embedded").name == "embedded"


def _args(*argv):
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    return p.parse_args(list(argv))


def test_cli_report_only_and_export(tmp_path, bb, datasets, capsys):
    bench, _ = make(tmp_path, bb, datasets, methods=["zeroshot", "linear_probe"], seeds=[1, 2])
    bench.run()
    argv = ["--out", str(tmp_path / "out"), "--methods", "zeroshot,linear_probe", "--datasets", "colours",
            "--shots", "1", "--seeds", "1,2", "--backbones", "tiny", "--epochs", "1", "--recipe", "paper", "--report-only",
            "--export", str(tmp_path / "assets")]
    assert cli.run(_args(*argv)) == 0
    out = capsys.readouterr().out
    assert "**Table 2 (measured)**" in out and "| 1 |" in out
    exported = sorted(p.name for p in (tmp_path / "assets").iterdir())
    assert exported == ["fig5_accuracy_vs_shots.png", "meta.json", "results.jsonl", "tables.md"]
    meta = json.loads((tmp_path / "assets" / "meta.json").read_text())
    assert meta["cells_finished"] == 3 and meta["cells_in_plan"] == 3

    assert cli.run(_args(*argv[:-3], "--list")) == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == 3 and all(line.startswith("done") for line in listing)


def test_cli_rejects_bad_settings(capsys):
    assert cli.run(_args("--methods", "nope")) == 2
    assert "unknown method(s) ['nope']" in capsys.readouterr().err


def test_quick_profile_halves_every_reference_schedule(tmp_path, bb, datasets):
    bench, _ = make(tmp_path, bb, datasets, profile="quick", epochs=None)
    coop = [bench.method_settings("coop", k, "colours")["recipe"]["epochs"] for k in (1, 2, 4, 8, 16)]
    assert coop == [25, 50, 50, 100, 100]
    assert bench.method_settings("pini", 1, "colours")["recipe"]["epochs"] == 100
    assert bench.method_settings("tip_adapter_f", 1, "colours")["recipe"]["epochs"] == 10
    assert bench.method_settings("coop", 1, "colours")["recipe"]["lr"] == 2e-3  # only epochs change
    paper, _ = make(tmp_path, bb, datasets, profile="paper", epochs=None)
    assert paper.method_settings("coop", 16, "colours")["recipe"]["epochs"] == 200
    assert bench.cell_config(Cell("tiny", "colours", 1, 1, "coop")) != paper.cell_config(
        Cell("tiny", "colours", 1, 1, "coop"))
    full, _ = make(tmp_path, bb, datasets, profile="quick", epochs=None, methods=["coop", "pini"],
                   shots=[1, 2, 4, 8, 16])
    text = cli.describe(full.cfg, full)
    assert "(epochs: coop 25/50/100; pini 100)" in text


def test_cli_end_to_end_on_a_coop_layout_folder_and_local_weights(tmp_path, capsys):
    """The real-data path: CoOp split JSON + images on disk, weights from a local open_clip folder."""
    from safetensors.torch import save_file

    from pini_core.bench.testing import TINY_CLIP_CFG

    model_dir = tmp_path / "weights"
    model_dir.mkdir()
    bb = tiny_backbone(seed=1)
    save_file({k: v.contiguous() for k, v in bb.model.state_dict().items()},
              str(model_dir / "open_clip_model.safetensors"))
    (model_dir / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": TINY_CLIP_CFG, "preprocess_cfg": {"size": 32, "mean": list(bb.mean), "std": list(bb.std)}}))
    ds = colour_dataset("pets", per_class={"train": 4, "val": 2, "test": 3})
    root = tmp_path / "coop"
    (root / "oxford_pets" / "images").mkdir(parents=True)
    split = {}
    for part in ("train", "val", "test"):
        rows = []
        for i, (img, y) in enumerate(getattr(ds, part)):
            name = f"{ds.classnames[y]}_{part}_{i}.jpg"
            img.save(root / "oxford_pets" / "images" / name)
            rows.append([name, y, ds.classnames[y]])
        split[part] = rows
    (root / "oxford_pets" / "split_zhou_OxfordPets.json").write_text(json.dumps(split))
    out = tmp_path / "out"
    argv = ["--preset", "paper", "--data-root", str(root), "--datasets", "oxford_pets",
            "--backbones", f"mine=local-dir:{model_dir}", "--methods", "zeroshot,linear_probe,coop",
            "--shots", "1,2", "--seeds", "1", "--epochs", "1", "--out", str(out), "--no-progress",
            "--device", "cpu"]
    assert cli.run(_args(*argv)) == 0
    text = capsys.readouterr().out
    assert "| Method | Pets |" in text and "backbone mine" in text
    recs = ResultsFile(out / "results.jsonl").load()
    assert sorted((r["method"], r["shots"]) for r in recs) == [
        ("coop", 1), ("coop", 2), ("linear_probe", 1), ("linear_probe", 2), ("zeroshot", 0)]
    assert all(r["n_test"] == 9 for r in recs)
    assert {r["n_train"] for r in recs if r["shots"] == 2} == {6}
    # same command again: nothing to do
    assert cli.run(_args(*argv)) == 0
    assert "5 cells (5 already done)" in capsys.readouterr().out
    # retrained weights under the same label: every cell is new, and the tables show only them
    state = {k: (v + 0.01).contiguous() for k, v in bb.model.state_dict().items()}
    save_file(state, str(model_dir / "open_clip_model.safetensors"))
    assert cli.run(_args(*argv, "--max-cells", "1")) == 0
    printed = capsys.readouterr().out
    assert "5 cells (0 already done)" in printed
    assert "| Zero-shot CLIP |" in printed and "| CoOp |" not in printed
    assert len(ResultsFile(out / "results.jsonl").load()) == 6


def test_val_that_is_the_test_set_is_never_searched_on(tmp_path, bb, datasets):
    import dataclasses

    ds = datasets["colours"]
    imagenet_like = dataclasses.replace(ds, val=ds.test, meta={"val_is_test": True})
    bench, _ = make(tmp_path, bb, {"colours": imagenet_like}, methods=["linear_probe"], seeds=[1], shots=[2])
    from pini_core.runner import fewshot

    data = fewshot(imagenet_like, 2, 1)
    test_ids = {id(x) for x, _ in ds.test}
    train_ids = {id(x) for x, _ in data.train}
    assert len(data.val) == 2 * 3 and not ({id(x) for x, _ in data.val} & (test_ids | train_ids))
    assert "outside the shots" in data.meta["val_source"]
    bench.run()
    assert bench.results.load()[0]["val_source"].startswith("train images")


def test_pini_table1_variant_with_noise_in_pixels(tmp_path, bb, datasets):
    noise = {"visual_location": "image", "visual_generator": "mlp", "text_location": "none"}
    bench, _ = make(tmp_path, bb, datasets, methods=["pini"], seeds=[1], pini_noise=noise)
    bench.run()
    (r,) = bench.results.load()
    assert r["settings"]["experiment"]["noise"]["visual_location"] == "image" and r["epochs_run"] == 1
    assert 0.0 <= r["accuracy"] <= 100.0 and set(r["targets"]) == {"dark"}
    default, _ = make(tmp_path, bb, datasets, methods=["pini"], seeds=[1])
    assert default.cell_config(default.plan()[0]) != r["config"]  # a variant is its own cell


def test_augmentation_off_is_a_recorded_setting_and_reaches_the_trainer(tmp_path, bb, datasets, monkeypatch):
    """The mini preset trains on the test transform (64-px toy shapes do not survive CoOp's
    random resized crop); that is part of the cell key and is what the trainer receives."""
    import pini_core.trainer as trainer

    on, _ = make(tmp_path, bb, datasets)
    off, _ = make(tmp_path, bb, datasets, augment=False, methods=["coop", "tip_adapter_f"])
    cell = Cell("tiny", "colours", 1, 1, "coop")
    assert on.method_settings("coop", 1, "colours")["recipe"]["augment"] is True
    assert off.method_settings("coop", 1, "colours")["recipe"]["augment"] is False
    # the linear probe never augments: its settings do not change with the switch
    assert on.method_settings("linear_probe", 1, "colours") == off.method_settings("linear_probe", 1, "colours")
    assert on.cell_config(cell) != off.cell_config(cell)
    seen = []
    real_fit = trainer.fit
    monkeypatch.setattr(trainer, "fit", lambda m, b, d, cfg, **kw: seen.append(cfg.augment) or real_fit(m, b, d, cfg, **kw))
    off.run()
    assert seen == [False] * 4  # coop and tip_adapter_f (one training loop), seeds 1 and 2
    recs = off.results.load()
    assert len(recs) == 4 and all(0 <= r["accuracy"] <= 100 for r in recs)
    assert "train augmentation off" in cli.describe(off.cfg, off)
    assert cli.config_from_args(_args()).augment is False  # the mini preset
    assert cli.config_from_args(_args("--augment")).augment is True


def test_tuned_protocol_chooses_the_lr_on_val_never_on_test(tmp_path, bb, datasets, monkeypatch):
    """One lr grid for every SGD-trained method, chosen on the few-shot val split; the test
    split is evaluated once, for the chosen lr only. Tip-Adapter-F (AdamW) keeps its recipe."""
    import pini_core.runner as runner

    grid = [1e-4, 0.3]
    bench, _ = make(tmp_path, bb, datasets, methods=["coop", "tip_adapter_f"], seeds=[1], epochs=2,
                    protocol="tuned", lr_grid=grid)
    ref, _ = make(tmp_path / "ref", bb, datasets, methods=["coop"], seeds=[1], epochs=2)
    cell = Cell("tiny", "colours", 1, 1, "coop")
    assert bench.cell_config(cell) != ref.cell_config(cell)  # a tuned cell is its own cell
    tests_seen = []
    real_eval = runner.evaluate_result

    def spy(method, backbone, splits, config, encode, **kw):
        tests_seen.append(config.recipe.lr)
        return real_eval(method, backbone, splits, config, encode, **kw)

    monkeypatch.setattr(runner, "evaluate_result", spy)
    bench.run()
    recs = {r["method"]: r for r in bench.results.load()}
    search = recs["coop"]["lr_search"]
    assert set(search["val_accuracy"]) == {"0.0001", "0.3"}
    vals = {float(k): v for k, v in search["val_accuracy"].items()}
    assert search["chosen_lr"] == max(sorted(vals), key=lambda lr: (vals[lr], -lr))
    assert recs["coop"]["settings"]["recipe"]["lr"] == 2e-3  # the key keeps the reference recipe + the grid
    assert recs["coop"]["settings"]["lr_search"]["grid"] == grid
    assert "lr_search" not in recs["tip_adapter_f"]  # AdamW: its own recipe
    assert tests_seen == [search["chosen_lr"], 1e-3]  # test evaluated once per cell, after the choice
    with pytest.raises(BenchError, match="protocol must be one of"):
        make(tmp_path, bb, datasets, protocol="best")
