import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from msde_bench import __version__
from msde_bench.bench import run_bench
from msde_bench.cli import main
from msde_bench.home import cache_home


def _walk(group, path=()):
    """Every command path of the click tree, groups included."""
    for name, cmd in sorted(group.commands.items()):
        yield [*path, name]
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, (*path, name))


COMMANDS = list(_walk(main))


def test_the_command_tree_is_walked():
    assert {"run", "compare", "explain", "bench"} <= {c[0] for c in COMMANDS}
    assert ["data", "convert"] in COMMANDS and ["results", "merge"] in COMMANDS


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(cmd):
    res = CliRunner().invoke(main, [*cmd, "--help"])
    assert res.exit_code == 0
    assert "Example" in res.output and "msde-bench " in res.output


def test_version():
    res = CliRunner().invoke(main, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "msde_bench", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_data_synth_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x").write_text("keep me")
    res = CliRunner().invoke(main, ["data", "synth", str(tmp_path), "--variant", "tiny"])
    assert res.exit_code == 2 and "exists and is not an empty folder" in res.output
    assert (tmp_path / "x").read_text() == "keep me"


def test_data_synth_writes_a_valid_set(tmp_path):
    out = tmp_path / "s"
    res = CliRunner().invoke(main, ["data", "synth", str(out), "--variant", "tiny", "--subjects", "3"])
    assert res.exit_code == 0, res.output
    assert "drawing pairs: 21/21" in res.output  # progress (at most every 30 s, and at the end)
    assert CliRunner().invoke(main, ["data", "validate", str(out)]).exit_code == 0
    assert len(list((out / "MSD-ME").iterdir())) == 21


def test_run_without_data_uses_the_cached_synthetic_set(tmp_path, monkeypatch):
    """--data synth:tiny generates the set into $MSDE_BENCH_HOME once and reuses it."""
    from msde_bench.data import synth

    args = ["run", "--data", "synth:tiny", "--recipe", "quick", "--epochs", "1", "--folds", "2", "--fold", "0",
            "--image-size", "32", "--device", "cpu", "--out", str(tmp_path / "r")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "generating the synthetic dataset" in res.output
    cached = [p for p in (cache_home() / "datasets").iterdir() if not p.name.endswith(".lock")]
    assert len(cached) == 1 and (cached[0] / "meta.json").is_file()
    # the result names the set portably, not by this machine's cache path
    (result,) = (tmp_path / "r").glob("*.json")
    assert json.loads(result.read_text())["dataset"]["root"] == "synth:tiny"
    calls = []
    monkeypatch.setattr(synth, "write_dataset", lambda *a, **k: calls.append(1))
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0 and calls == []
    assert "generating" not in res.output


@pytest.mark.parametrize("paradigm", ["baseline", "contrastive", "distill"])
def test_bench_reports_both_ratios_for_every_paradigm(paradigm):
    report = run_bench("resnet18", paradigm, batch_size=8, image_size=32, steps=2,
                       device=__import__("torch").device("cpu"), rounds=1)
    assert report["overhead"] > 0 and report["data_ratio"] > 0
    # the bare loop puts the same images through the model as the paradigm does
    what = {"baseline": "one pass", "contrastive": "two passes", "distill": "teacher + student pass"}[paradigm]
    assert f"{what} in both loops" in report["lines"][0]
    assert any("harness overhead" in ln for ln in report["lines"])
    assert any("pipeline / model" in ln for ln in report["lines"])


def test_paradigms_lists_every_option():
    res = CliRunner().invoke(main, ["paradigms"])
    assert res.exit_code == 0
    for text in ("| baseline", "train_on", "| contrastive", "align", "| distill", "lambda", "1000.0",
                 "quirk_double_softmax"):
        assert text in res.output
