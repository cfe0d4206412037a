"""The repository's promises: CI runs the README's test command; shipped weights are safe."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.S)


def test_ci_runs_the_readme_test_command():
    test_cmd = next(c for c in _readme_commands() if "pytest" in c).strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines(), f"{test_cmd!r} must be a line of .ci/run"


def test_readme_app_command_installs_and_runs_app():
    app_cmd = _readme_commands()[0].strip()
    assert app_cmd == "pip install -r requirements.txt && python app.py"


def test_requirements_are_pinned():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.match(r"^[A-Za-z0-9_.\-\[\]]+==[0-9][^\s]*$", line), f"unpinned requirement: {line}"


def test_no_pickle_weights_shipped():
    bad = [p for p in (ROOT / "checkpoints").rglob("*") if p.suffix in {".pt", ".pth", ".bin", ".pkl", ".ckpt"}]
    assert not bad, f"pickle-format weights in checkpoints/: {bad}"
