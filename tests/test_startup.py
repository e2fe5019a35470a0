"""Start-up: the commands that only read result files (and --help) import neither torch nor timm
nor scikit-learn (issue 23), checked in a fresh interpreter, where nothing was imported before."""

import json
import os
import subprocess
import sys

import pytest

from tests.test_leaderboard import make_result, write

HEAVY = ("torch", "timm", "sklearn")

# argv: the modules to look for (comma-separated), then the command line
PROBE = """
import json, sys
from msde_bench.cli import main
watch = sys.argv[1].split(",")
try:
    main(sys.argv[2:], standalone_mode=False)
except SystemExit as e:
    code = e.code
else:
    code = 0
print(json.dumps({"code": code, "heavy": sorted(m for m in watch if m in sys.modules)}), file=sys.stderr)
"""


def _probe(args: list[str], cwd, watch=HEAVY, env=None) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, ",".join(watch), *args], capture_output=True, text=True,
                         cwd=cwd, timeout=300, env=env)
    lines = out.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("{"), out.stderr[-2000:]
    return json.loads(lines[-1])


@pytest.mark.parametrize("args", [
    ["--help"],
    ["run", "--help"],
    ["results", "--results", "RES"],
    ["results", "--results", "RES", "--format", "markdown", "show", "resnet18-"],
    ["leaderboard", "--results", "RES", "--output", "LB/README.md"],
])
def test_reading_commands_start_without_torch(tmp_path, args):
    write(tmp_path / "RES", make_result(), make_result(paradigm="contrastive"), make_result(paradigm="distill"))
    got = _probe(args, tmp_path)
    assert got["code"] in (0, None), got
    assert got["heavy"] == [], f"msde-bench {' '.join(args)} imported {got['heavy']}"
    if args[0] == "leaderboard":  # it really rendered, with the budget note that asks each paradigm's shape
        text = (tmp_path / "LB" / "README.md").read_text()
        assert "Budget: equal epochs" in text
        assert "The mixed baselines train identically under both rules" in text


def test_the_probe_sees_an_import(tmp_path):
    """The probe itself can fail: a command that does load the models is seen importing torch."""
    got = _probe(["methods"], tmp_path)
    assert "torch" in got["heavy"]


def test_a_run_imports_only_what_it_uses(tmp_path):
    """`run` needs torch, timm (the model) and scikit-learn (the folds), never the plotting and CAM
    libraries of `explain` and the leaderboard (pandas is not watched: scikit-learn imports it)."""
    args = ["run", "--data", "synth:tiny", "--epochs", "1", "--folds", "2", "--image-size", "16", "--batch-size", "8",
            "--device", "cpu", "--threads", "1", "--out", str(tmp_path / "out"), "--no-progress", "--no-save-models"]
    got = _probe(args, tmp_path, HEAVY + ("matplotlib", "pytorch_grad_cam", "cv2"),
                 env={**os.environ, "MSDE_BENCH_HOME": str(tmp_path / "home")})
    assert got["code"] in (0, None), got
    assert got["heavy"] == ["sklearn", "timm", "torch"]
    assert list((tmp_path / "out").glob("*.json"))  # it really ran


def test_the_results_side_and_the_paradigms_import_what_they_should():
    """Structure that keeps the results side cheap and the layers one way: the leaderboard's model
    and renderers and the results module import no torch (in a fresh interpreter), and no module of
    msde_bench/paradigms imports the training loop (they use msde_bench.device)."""
    import ast
    from pathlib import Path

    code = ("import sys, msde_bench.board, msde_bench.leaderboard, msde_bench.results, msde_bench.webpage; "
            "print(sorted(m for m in ('torch', 'timm', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]
    root = Path(__file__).resolve().parents[1] / "msde_bench" / "paradigms"
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "msde_bench.training" or n.startswith("msde_bench.training.") for n in names), path
