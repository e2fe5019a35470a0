"""The plugin system: entry points, broken and disabled plugins, duplicates, the out-of-tree example."""

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from msde_bench.cli import main
from msde_bench.plugins import registry

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "msde-bench-example-method"


GOOD = """
    from msde_bench.api import BackboneMethod, Output, cross_entropy_terms, hookimpl
    from torch import nn

    class Good(BackboneMethod):
        paper = "Nobody, 2024"
        description = "a test method"
        def __init__(self, num_classes=7, pretrained=False, options=None):
            super().__init__(num_classes, pretrained, options)
            self.fc = nn.Linear(self.dim, num_classes)
        def forward(self, x):
            f = self.features(x)
            return Output(self.fc(f.mean((2, 3))), f.mean((2, 3)), f)
        def loss(self, x, y, out, state):
            return cross_entropy_terms(out, y)

    @hookimpl
    def msde_bench_register_methods(register):
        register("good", Good)
"""


def test_builtins_and_in_tree_plugins_are_listed():
    res = CliRunner().invoke(main, ["plugins"])
    assert res.exit_code == 0
    assert "| msde_bench.builtins | " in res.output and "built-in" in res.output
    assert "paradigm:baseline, paradigm:contrastive, paradigm:distill" in res.output
    assert "| scn " in res.output and "in-tree" in res.output and "method:scn" in res.output


def test_a_plugin_that_fails_to_import_is_reported_and_skipped(install):
    reg = install("broken-pkg", {"broken": "msde_broken_plugin"},
                  {"msde_broken_plugin": "raise RuntimeError('boom at import')\n"})
    assert reg.plugins["broken"].error == "RuntimeError: boom at import"
    assert "scn" in reg.methods  # everything else still loads
    res = CliRunner().invoke(main, ["plugins"])
    assert res.exit_code == 0 and "error: RuntimeError: boom at import" in res.output
    assert CliRunner().invoke(main, ["methods"]).exit_code == 0


def test_a_plugin_that_fails_to_register_leaves_nothing_behind(install):
    src = """
        from msde_bench.api import hookimpl
        @hookimpl
        def msde_bench_register_methods(register):
            register("half", object)
            raise ValueError("second half failed")
    """
    reg = install("half-pkg", {"half": "msde_half_plugin"}, {"msde_half_plugin": src})
    assert reg.plugins["half"].error == "ValueError: second half failed"
    assert "half" not in reg.methods and reg.plugins["half"].registers == []


def test_misspelled_hook_is_caught(install):
    src = """
        from msde_bench.api import hookimpl
        @hookimpl
        def msde_bench_register_method(register):
            pass
    """
    reg = install("typo-pkg", {"typo": "msde_typo_plugin"}, {"msde_typo_plugin": src})
    assert "msde_bench_register_method" in reg.plugins["typo"].error
    assert "unknown hook" in reg.plugins["typo"].error


@pytest.mark.parametrize("ep_name", ["aa-dup", "zz-dup"])  # alphabetical order no longer decides
def test_an_installed_plugin_cannot_shadow_an_in_tree_method(install, ep_name, tiny_root, tmp_path):
    src = """
        from msde_bench.api import hookimpl
        from msde_scn import SCN
        @hookimpl
        def msde_bench_register_methods(register):
            register("scn", SCN)
    """
    reg = install("dup-pkg", {ep_name: "msde_dup_plugin"}, {"msde_dup_plugin": src})
    assert reg.plugins[ep_name].error == (f"MsdeError: method 'scn' is already registered by in-tree plugin 'scn'; "
                                          f"plugin '{ep_name}' may not replace it")
    assert reg.methods["scn"].plugin == "scn"


def test_a_method_may_not_take_a_timm_model_name(install):
    src = GOOD.replace('register("good", Good)', 'register("resnet18", Good)')
    reg = install("shadow-pkg", {"shadow": "msde_shadow_plugin"}, {"msde_shadow_plugin": src})
    assert "'resnet18' of plugin 'shadow' is a timm model name" in reg.plugins["shadow"].error
    assert "resnet18" not in reg.methods


def test_a_failed_or_disabled_plugin_is_named_when_its_model_is_asked_for(install, monkeypatch):
    install("broken-pkg", {"broken": "msde_broken_plugin"}, {"msde_broken_plugin": "raise RuntimeError('boom')\n"})
    res = CliRunner().invoke(main, ["run", "--model", "broken", "--device", "cpu"])
    assert res.exit_code == 2 and "plugin 'broken' failed to load: RuntimeError: boom" in res.output
    tb = CliRunner().invoke(main, ["plugins", "--traceback"])
    assert "Traceback" in tb.output and "boom" in tb.output
    monkeypatch.setenv("MSDE_BENCH_DISABLE_PLUGINS", "broken,nosuch")
    reg = registry(reload=True)
    assert any("'nosuch'" in w for w in reg.warnings)
    res = CliRunner().invoke(main, ["run", "--model", "broken", "--device", "cpu"])
    assert res.exit_code == 2 and "disabled by MSDE_BENCH_DISABLE_PLUGINS" in res.output


def test_disable_variable(install, monkeypatch):
    install("good-pkg", {"good": "msde_good_plugin"}, {"msde_good_plugin": GOOD})
    monkeypatch.setenv("MSDE_BENCH_DISABLE_PLUGINS", "good")
    reg = registry(reload=True)
    assert "good" not in reg.methods and "scn" in reg.methods and reg.plugins["good"].disabled
    monkeypatch.setenv("MSDE_BENCH_DISABLE_PLUGINS", "*")
    reg = registry(reload=True)
    assert set(reg.methods) == set() and "baseline" in reg.paradigms  # built-ins stay
    res = CliRunner().invoke(main, ["plugins"])
    assert "disabled" in res.output


def test_method_options_are_namespaced(install):
    install("good-pkg", {"good": "msde_good_plugin"}, {"msde_good_plugin": GOOD})
    from msde_bench.spec_build import check_options

    opts = check_options("scn", "contrastive", ["beta=2", "scn.beta=0.5", "margin_1=0.1"])
    assert opts["beta"] == 2.0 and opts["scn.beta"] == 0.5 and opts["scn.margin_1"] == 0.1
    opts = check_options("good", "baseline", ["backbone=resnet10t"])
    assert opts["good.backbone"] == "resnet10t"


def test_out_of_tree_example_end_to_end(install, tiny_root, tmp_path):
    """The example package of CONTRIBUTING.md, registered as pip would install it, runs end to end."""
    ep = dict(line.split(" = ") for line in (EXAMPLE / "pyproject.toml").read_text().splitlines()
              if line.startswith("smooth-ce = "))
    assert ep == {"smooth-ce": '"msde_example_method"'}
    reg = install("msde-bench-example-method", {"smooth-ce": "msde_example_method"}, path=EXAMPLE, version="0.1.0")
    assert reg.plugins["smooth-ce"].source == "installed" and reg.plugins["smooth-ce"].error is None
    res = CliRunner().invoke(main, ["run", "--model", "smooth-ce", "--paradigm", "contrastive", "--data",
                                    str(tiny_root), "--recipe", "quick", "--epochs", "1", "--folds", "2", "--fold", "0",
                                    "--image-size", "32", "--device", "cpu", "--out", str(tmp_path / "r"),
                                    "--opt", "smoothing=0.3", "--no-progress"])
    assert res.exit_code == 0, res.output
    import json

    result = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    assert result["spec"]["options"]["smooth-ce.smoothing"] == 0.3
    res = CliRunner().invoke(main, ["plugins"])
    assert "| smooth-ce " in res.output and "installed" in res.output and "0.1.0" in res.output


def test_official_options_set_by_the_official_recipe_only():
    """SCAN's official trunk lr scale comes with --recipe official; an explicit --opt still wins."""
    from msde_bench.factory import build_method
    from msde_bench.spec import make_spec
    from msde_bench.spec_build import check_options

    assert check_options("scan", "baseline", [])["scan.backbone_lr_scale"] == 1.0
    assert check_options("scan", "baseline", [], "quick")["scan.backbone_lr_scale"] == 1.0
    official = check_options("scan", "baseline", [], "official")
    assert official["scan.backbone_lr_scale"] == 0.01
    assert check_options("scan", "baseline", ["backbone_lr_scale=0.5"], "official")["scan.backbone_lr_scale"] == 0.5
    assert check_options("resnet18", "baseline", [], "official") == check_options("resnet18", "baseline", [])
    from msde_bench.spec_build import check_compare_options as check_user_options

    assert check_user_options("scan", [], "official") == {"scan.backbone_lr_scale": 0.01}
    assert check_user_options("scan", ["backbone_lr_scale=2"], "official") == {"scan.backbone_lr_scale": 2.0}
    assert check_user_options("scan", [], "quick") == {}
    spec = make_spec(model="scan", paradigm="baseline", recipe="official", options=official,
                     official={"lr": 0.01, "optimizer": "sgd"})
    method, _ = build_method(spec)
    groups = method.param_groups(spec.lr)
    assert [g.get("lr_scale", 1.0) for g in groups] == [0.01, 1.0]


def test_official_recipe():
    from msde_bench.errors import MsdeError
    from msde_bench.factory import official_recipe
    from msde_bench.spec import make_spec
    from msde_bench.training import make_optimizer, make_scheduler

    spec = make_spec(model="dan", paradigm="baseline", recipe="official", official=official_recipe("dan"))
    assert (spec.optimizer, spec.lr, spec.momentum, spec.schedule, spec.step_size, spec.epochs, spec.batch_size) == \
        ("sgd", 0.1, 0.9, "step", 10, 40, 256)
    assert spec.folds == 10 and spec.data == "synth:full"  # protocol and data stay the paper's
    import torch

    opt = make_optimizer(spec, [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr_scale": 0.5}])
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert isinstance(make_scheduler(spec, opt), torch.optim.lr_scheduler.StepLR)
    with pytest.raises(MsdeError, match="has no official recipe"):
        make_spec(model="resnet18", paradigm="baseline", recipe="official", official={})
    res = CliRunner().invoke(main, ["run", "--model", "resnet18", "--recipe", "official"])
    assert res.exit_code == 2 and "model 'resnet18' has no official recipe" in res.output


def test_a_method_that_raises_mid_fold_is_one_line_with_its_plugin_and_fold(install, tiny_root, tmp_path):
    src = GOOD.replace("        def forward(self, x):\n", "        def forward(self, x):\n"
                       "            raise RuntimeError('kaboom in forward')\n")
    install("bad-pkg", {"badplug": "msde_bad_plugin"}, {"msde_bad_plugin": src.replace('"good"', '"bad"')})
    args = ["run", "--model", "bad", "--data", str(tiny_root), "--epochs", "1", "--folds", "2", "--image-size", "32",
            "--batch-size", "8", "--device", "cpu", "--no-progress", "--no-save-models", "--out", str(tmp_path)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output
    assert ("error: fold 0: method bad (plugin badplug 1.2.3, installed) failed: RuntimeError: kaboom in forward "
            "(--traceback shows where)") in " ".join(res.output.split())
    assert "Traceback" not in res.output
    res = CliRunner().invoke(main, [*args, "--traceback"])
    assert res.exit_code == 1 and "Traceback (most recent call last)" in res.output and "msde_bad_plugin" in res.output


def test_two_installed_plugins_with_one_method_name_give_it_to_neither(install, tiny_root):
    one = GOOD.replace('register("good", Good)', 'register("same", Good)\n        register("only1", Good)')
    two = GOOD.replace('register("good", Good)', 'register("same", Good)')
    install("pkg-a", {"zeta": "msde_zeta_plugin"}, {"msde_zeta_plugin": one})
    reg = install("pkg-b", {"alpha": "msde_alpha_plugin"}, {"msde_alpha_plugin": two})
    assert "same" not in reg.methods and "only1" in reg.methods  # the contested name only
    assert reg.contested[("method", "same")] == ["alpha", "zeta"]
    listed = CliRunner().invoke(main, ["plugins"])
    assert "method 'same' is registered by 2 installed plugins ('alpha', 'zeta')" in " ".join(listed.output.split())
    res = CliRunner().invoke(main, ["run", "--model", "same", "--data", str(tiny_root), "--device", "cpu"])
    assert res.exit_code == 2 and "none of them provides it" in " ".join(res.output.split())


def test_a_plugin_that_prints_on_import_never_corrupts_a_document_on_stdout(install, tmp_path):
    import msde_bench.plugins as P
    from tests.test_leaderboard import make_result, write

    install("noisy-pkg", {"noisy": "msde_noisy_plugin"},
            {"msde_noisy_plugin": GOOD.replace('"good"', '"noisy"') + "\n    print('hello from a noisy plugin')\n"})
    d = write(tmp_path / "r", make_result(model="scn"))
    for args in (["leaderboard", "--results", str(d), "--output", "-"], ["methods"]):
        sys.modules.pop("msde_noisy_plugin", None)
        P._REGISTRY = None  # the command itself loads the plugins if it needs them (importing the noisy one)
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0 and "noisy plugin" not in res.stdout, res.stdout
    assert "| noisy " in res.stdout and "hello from a noisy plugin" in res.stderr  # methods: said, on stderr
    sys.modules.pop("msde_noisy_plugin", None)
    P._REGISTRY = None
    res = CliRunner().invoke(main, ["leaderboard", "--results", str(d), "--output", "-"])
    assert res.stdout.startswith("<!-- generated by `msde-bench leaderboard`")


TOY_EXECUTOR = """
    from msde_bench.api import Executor, ExecutorOption, collect, hookimpl

    CALLS = []

    class Inline(Executor):
        name = "inline"
        description = "every cell in this process, one after another"
        options = (ExecutorOption("tag", str, "t", "inline: a word it records"),
                   ExecutorOption("rounds", int, 1, "inline: at least one", minimum=1))

        def run(self, tasks, execute, *, workers=None, on_done=None, tag="t", rounds=1):
            CALLS.append((len(tasks), workers, tag, rounds))
            done = []
            for task in tasks:
                collect(task, lambda task=task: execute(task), "inline", done, on_done)
            return done

    @hookimpl
    def msde_bench_register_executors(register):
        register("inline", Inline)
"""


def test_an_executor_plugin_runs_a_sweep_with_its_own_flags(install, tiny_root, tmp_path):
    """The executor contract from outside the core: a plugin registers an executor; `sweep` gets its
    --inline-* flags, runs every cell through it, and the result equals a serial `msde-bench run`."""
    from msde_bench import results as R

    install("msde-bench-inline", {"inline": "inline_exec"}, {"inline_exec": TOY_EXECUTOR})
    args = ["--data", str(tiny_root), "--recipe", "quick", "--epochs", "1", "--folds", "2", "--image-size", "32",
            "--batch-size", "16", "--device", "cpu"]
    grid = tmp_path / "grid.toml"
    grid.write_text(f'data = "{tiny_root}"\nrecipe = "quick"\nepochs = 1\nfolds = 2\nimage_size = 32\n'
                    'batch_size = 16\ndevice = "cpu"\nmodel = "resnet18"\nparadigm = "baseline"\n')
    assert "--inline-tag TEXT" in CliRunner().invoke(main, ["sweep", "--help"]).output
    res = CliRunner().invoke(main, ["sweep", str(grid), "--out", str(tmp_path / "out"), "--executor", "inline",
                                    "--inline-tag", "x", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "| done    |       2 |" in res.output
    assert sys.modules["inline_exec"].CALLS == [(2, None, "x", 1)]
    serial = CliRunner().invoke(main, ["run", *args, "--out", str(tmp_path / "serial"), "--no-progress"])
    assert serial.exit_code == 0, serial.output
    (swept,) = [R.load(p) for p in (tmp_path / "out").glob("*.json")]
    (alone,) = [R.load(p) for p in (tmp_path / "serial").glob("*.json")]
    assert [f["confusion_masked"] for f in swept["folds"]] == [f["confusion_masked"] for f in alone["folds"]]

    # its options are checked before anything runs; another executor's flag is refused
    low = CliRunner().invoke(main, ["sweep", str(grid), "--executor", "inline", "--inline-rounds", "0"])
    assert low.exit_code == 2 and "--inline-rounds 0: must be at least 1" in low.output
    other = CliRunner().invoke(main, ["sweep", str(grid), "--executor", "inline", "--threads", "1"])
    assert other.exit_code == 2 and "--threads: an option of the local executor, not of --executor inline" in other.output
    assert "executor:inline" in CliRunner().invoke(main, ["plugins"]).output


def test_an_executor_plugin_may_not_take_another_flag(install):
    src = TOY_EXECUTOR.replace('"inline: a word it records")', '"inline: a word", flag="--out")')
    reg = install("msde-bench-inline", {"inline": "inline_exec"}, {"inline_exec": src})
    assert "inline" not in reg.executors
    assert "may not choose its flag (--out)" in reg.plugins["inline"].error
