"""Issue 12, engine side, CLI: every PiniError -> `error: <message>` + exit 2 (no traceback),
Ctrl-C -> one line + exit 130, arguments of eval/decode/meter/data-check/bench checked while
parsing (before any work), --on-broken-image honoured by eval."""
from __future__ import annotations

import pytest

import pini_core.commands.common as common
import pini_core.commands.datasets as datasets_cmd
from engine_fixtures import save_local_open_clip_dir, shared_backbone, write_imagefolder
from pini_core.cli import main
from pini_core.errors import DataError, PiniError


def _exit(argv) -> int:
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.fixture
def no_work(monkeypatch):
    """Any backbone load or dataset read fails the test: argument errors must come first."""
    def boom(*a, **k):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(common, "load_backbone", boom)
    monkeypatch.setattr("pini_core.data.registry.get_dataset", boom)


def test_a_pini_error_is_one_line_and_exit_2(monkeypatch, capsys):
    def fail(args):
        raise DataError("first line\n  second line")

    monkeypatch.setattr(datasets_cmd, "run", fail)
    assert main(["datasets"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: first line | second line\n" and captured.out == ""


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets_cmd, "run", interrupted)
    assert main(["datasets"]) == 130
    assert capsys.readouterr().err == "interrupted (Ctrl-C)\n"


def test_every_engine_error_class_is_a_pini_error():
    from pini_core.analysis.decode import DecodeError
    from pini_core.backbone import BackboneError
    from pini_core.bench.harness import BenchError
    from pini_core.checkpoint import CheckpointError
    from pini_core.data.coop import DatasetLayoutError
    from pini_core.data.images import ImageLoadError
    from pini_core.model import PromptError
    from pini_core.noise.config import NoiseConfigError
    from pini_core.trainer import TrainingError

    old_bases = {BackboneError: RuntimeError, CheckpointError: ValueError, TrainingError: RuntimeError,
                 PromptError: ValueError, NoiseConfigError: ValueError, DatasetLayoutError: FileNotFoundError,
                 ImageLoadError: ValueError, DecodeError: ValueError, BenchError: RuntimeError}
    for cls, old in old_bases.items():
        assert issubclass(cls, PiniError) and issubclass(cls, old), cls


@pytest.mark.parametrize("argv, message", [
    (["eval", "--checkpoint", "ck", "--seed", str(10**30)], "argument --seed: a seed must be between 0 and 4294967295"),
    (["eval", "--checkpoint", "ck", "--draws", "0"], "argument --draws: a whole number must be >= 1, got 0"),
    (["eval", "--checkpoint", "ck", "--seed", "-1"], "argument --seed: a seed must be between 0 and 4294967295, got -1"),
    (["decode", "--checkpoint", "ck", "-k", "-3"], "argument -k/--top-k: a whole number must be >= 1, got -3"),
    (["decode", "--checkpoint", "ck", "--seed", "1.5"], "argument --seed: expected a seed, got '1.5'"),
    (["meter", "--checkpoint", "ck", "--noise-seed", str(2**32)], "argument --noise-seed: a seed must be between"),
    (["meter", "--checkpoint", "ck", "--plot", "."], "argument --plot: . is an existing folder; give a file name"),
    (["data-check", "imagefolder", "--shots", "-3"], "argument --shots: a number of shots must be >= 0, got -3"),
    (["data-check", "imagefolder", "--seed", str(10**30)], "argument --seed: a seed must be between 0 and"),
    (["bench", "--shots", "4,0"], "argument --shots: a number of shots must be >= 1, got 0"),
    (["bench", "--seeds", f"1,{10**30}"], "argument --seeds: a seed must be between 0 and 4294967295"),
    (["bench", "--epochs", "0"], "argument --epochs: a whole number must be >= 1, got 0"),
])
def test_arguments_are_checked_before_any_work(argv, message, no_work, capsys):
    assert _exit(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("flag", ["--out", "--export"])
def test_bench_refuses_an_output_folder_that_is_a_file(flag, tmp_path, no_work, capsys):
    f = tmp_path / "results.txt"
    f.write_text("not a folder")
    assert _exit(["bench", flag, str(f)]) == 2
    assert f"argument {flag}: {f} names an existing file ({f}), not a folder" in capsys.readouterr().err
    assert _exit(["bench", flag, str(f / "below")]) == 2
    assert f"names an existing file ({f})" in capsys.readouterr().err


# ----------------------------------------------------------------------------- eval and broken images

@pytest.fixture(scope="module")
def broken_setup(tmp_path_factory):
    from pini_core.backbone import load_backbone
    from pini_core.checkpoint import save_pini
    from pini_core.model import PiNIModel
    from pini_core.noise import NoiseConfig

    base = tmp_path_factory.mktemp("robust_cli")
    model_dir = save_local_open_clip_dir(shared_backbone(), base / "clip")
    root = write_imagefolder(base / "images", per_class=5, classes=("red", "blue"))
    broken = [root / "red" / "0.png", root / "red" / "1.png", root / "blue" / "1.png", root / "blue" / "2.png"]
    for f in broken[::2]:
        f.write_bytes(b"")  # empty
    for f in broken[1::2]:
        f.write_bytes(b"junk")  # not an image
    bb = load_backbone(f"local-dir:{model_dir}", device="cpu")
    ck = save_pini(PiNIModel(bb, ["blue", "red"], "a photo of a {}.", NoiseConfig(n_ctx=4)), base / "ck")
    return {"model": f"local-dir:{model_dir}", "root": str(root), "ck": str(ck), "broken": {str(f) for f in broken}}


def test_eval_skips_and_counts_broken_images_when_asked(broken_setup, capsys):
    s = broken_setup
    argv = ["eval", "--checkpoint", s["ck"], "--model", s["model"], "--device", "cpu", "--dataset", "imagefolder",
            "--root", s["root"], "--split", "train"]
    from pini_core.data.registry import get_dataset

    train = get_dataset("imagefolder", root=s["root"], seed=1).train  # the split eval uses (seed 1)
    n_broken = sum(p in s["broken"] for p, _ in train)
    assert n_broken >= 2  # 3 of 5 images per class train; 2 of each 5 are broken
    assert main(argv + ["--on-broken-image", "skip"]) == 0
    captured = capsys.readouterr()
    assert f"note: skipped {n_broken} broken image(s) of {len(train)} in the train split" in captured.err
    assert f'"n": {len(train) - n_broken}' in captured.out
    assert main(argv) == 2  # raise: a clean one-line error naming a broken file
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and ("0.png" in err or "1.png" in err)
