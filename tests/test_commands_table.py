"""Commands in one table (issue 11, item 8): every tool of the project is a row of
`pini_core.cli.COMMANDS`, reached as `python -m pini_core <command>`, and each command module
has `add_arguments(parser)` + `run(args)` (checked from the source, nothing heavy imported)."""
from __future__ import annotations

import ast
import importlib.util
import json

import pytest

from pini_core.cli import COMMANDS, main

REQUIRED = {
    "train", "eval", "decode", "meter", "speed", "models", "datasets", "data-check", "pretrain", "bench", "mung",
    "zeroshot",  # the embedded CLIP's zero-shot record (pini_core.world.zeroshot)
    "examples",  # the app's example images (pini_core.world.examples)
    "mung-params",  # MuNG parameter count (pini_core.mung.param_count)
    "mung-visualize",  # MuNG figures (pini_core.mung.visualize)
    "app-bench",  # the app's benchmark (demo.bench_app)
}


def _functions(module: str):
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} is not importable"
    tree = ast.parse(open(spec.origin).read())
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_every_tool_is_a_row_of_the_table():
    names = [name for name, _, _ in COMMANDS]
    assert len(names) == len(set(names))
    assert REQUIRED <= set(names), sorted(REQUIRED - set(names))


@pytest.mark.parametrize("name, module", [(n, m) for n, m, _ in COMMANDS])
def test_each_command_module_has_add_arguments_and_run(name, module):
    funcs = _functions(module)
    assert "add_arguments" in funcs and "run" in funcs, f"{name}: {module} lacks add_arguments/run"
    assert len(funcs["run"].args.args) == 1 and len(funcs["add_arguments"].args.args) == 1


def test_examples_command_writes_pngs(tmp_path, capsys):
    assert main(["examples", "--out", str(tmp_path), "--per-task", "2", "--tasks", "toy-sketch"]) == 0
    pngs = sorted(p.name for p in (tmp_path / "toy-sketch").iterdir())
    assert len(pngs) == 2 and all(p.endswith(".png") for p in pngs)
    assert "toy-sketch: 2 images" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["zeroshot", "--samples", "5"], "--samples must be >= 10"),
    (["mung-params", "--heads", "0"], "--heads must be >= 1"),
    (["mung-visualize", "--repeats", "0"], "--threads and --repeats must be >= 1"),
])
def test_new_commands_check_their_arguments(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err


def test_app_bench_and_mung_convert_are_reachable(capsys):
    for argv, option in ((["app-bench", "--help"], "--repeats"), (["mung", "convert", "--help"], "--old")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
        assert option in capsys.readouterr().out


def test_mung_convert_through_the_table(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    from pini_core.mung.checkpoint import load_generator
    from pini_core.mung.config import MuNGConfig
    from pini_core.mung.generator import MuNGGenerator

    torch.manual_seed(0)
    gen = MuNGGenerator(MuNGConfig(visual_dim=16, text_dim=16, num_heads=4))
    save_file({k: v.contiguous() for k, v in gen.state_dict().items()}, str(tmp_path / "g.safetensors"))
    (tmp_path / "g.json").write_text(json.dumps({"kind": "mung-generator", "config": gen.config.to_dict()}))
    assert main(["mung", "convert", "--old", str(tmp_path / "g"), "--out", str(tmp_path / "new")]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["format"] == "mung-generator/1" and len(printed["weights_sha256"]) == 64
    back = load_generator(tmp_path / "new")
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in gen.state_dict().items())
