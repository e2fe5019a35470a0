"""The written contract is the code: ABCs, the constructor call, register defaults, what plugins
import, the Baseline paradigm's views, and that an epoch visits every (pair, view) once."""

import ast
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from msde_bench.api import Batch, LossState, Method, Output, Paradigm, cross_entropy_terms
from msde_bench.cli import main
from msde_bench.data.pairs import ImageCache
from msde_bench.errors import MsdeError
from msde_bench.factory import build_method
from msde_bench.options import parse_options
from msde_bench.paradigms.baseline import Baseline
from msde_bench.plugins import registry
from msde_bench.spec import RunSpec
from msde_bench.spec_build import check_options
from msde_bench.training import Trainer

ROOT = Path(__file__).resolve().parents[1]


class Recorder(Method):
    """Records the images it sees; a single 1x1 conv."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 7, 1)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        f = self.conv(x)
        return Output(f.mean((2, 3)), f.mean((2, 3)), f)

    def loss(self, x, y, out, state):
        return cross_entropy_terms(out, y)


def test_method_and_paradigm_are_abstract():
    class NoLoss(Method):
        def forward(self, x):
            return x

    class NoStep(Paradigm):
        pass

    with pytest.raises(TypeError, match="loss"):
        NoLoss()
    with pytest.raises(TypeError, match="training_step"):
        NoStep({})


def test_the_core_builds_a_method_as_the_hookspec_says(monkeypatch):
    calls = []
    entry = registry().methods["scn"]
    real = entry.obj
    spec = RunSpec(model="scn", options=tuple(sorted(check_options("scn", "baseline", ["beta=0.5"]).items())))
    monkeypatch.setattr(entry, "obj", lambda **kw: calls.append(kw) or real(**kw))
    build_method(spec)
    (kw,) = calls
    assert set(kw) == {"num_classes", "pretrained", "options"} and kw["num_classes"] == 7
    assert kw["options"]["beta"] == 0.5 and "scn.beta" not in kw["options"]  # bare names, defaults filled
    assert set(kw["options"]) == set(real.options)


@pytest.mark.parametrize("model", ["resnet18", "scn", "eac", "dan", "ran", "scan", "dacl", "arm", "manet"])
def test_every_method_trains_on_a_set_with_fewer_classes(model):
    """CK+ without neutral has six classes: the core builds each method with num_classes=6 (labels 0-5)."""
    from msde_bench.spec_build import canonical_spec
    from msde_bench.testing import check_fewer_classes

    spec = canonical_spec(RunSpec(model=model, image_size=32, options=tuple(sorted(
        check_options(model, "baseline", []).items()))))
    method, _ = build_method(spec, num_classes=6)
    check_fewer_classes(method)
    assert method.num_classes == 6


def test_register_takes_paper_and_description_from_the_class():
    entry = registry().methods["dacl"]
    assert entry.paper == entry.obj.paper and entry.description == entry.obj.description and entry.paper


def _core_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("msde_bench"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("msde_bench"))
    return names


def test_plugins_import_only_the_api():
    files = list((ROOT / "plugins").glob("msde_*/*.py")) + list((ROOT / "examples").rglob("msde_example_method/*.py"))
    assert len(files) >= 17
    for path in files:
        assert _core_imports(path) <= {"msde_bench.api"}, path
    example_tests = list((ROOT / "examples").rglob("tests/*.py"))
    assert example_tests and all(_core_imports(p) <= {"msde_bench.api", "msde_bench.testing"} for p in example_tests)


def _batch(n=4):
    g = torch.Generator().manual_seed(0)
    nm, m = torch.randn(n, 3, 4, 4, generator=g), torch.randn(n, 3, 4, 4, generator=g)
    return Batch(nm, m, torch.arange(n) % 7, view=torch.tensor([0, 1, 1, 0]), index=torch.arange(n), step=3, seed=9)


@pytest.mark.parametrize("train_on", ["non-masked", "masked", "mixed"])
def test_baseline_feeds_the_chosen_view(train_on):
    method, batch = Recorder(), _batch()
    out = Baseline(parse_options([f"train_on={train_on}"], Baseline.options)).training_step(method, batch)
    (x,) = method.seen
    if train_on == "non-masked":
        assert torch.equal(x, batch.non_masked)
    elif train_on == "masked":
        assert torch.equal(x, batch.masked)
    else:  # per sample: view 1 = masked
        for i, v in enumerate(batch.view.tolist()):
            assert torch.equal(x[i], (batch.masked if v else batch.non_masked)[i])
    assert torch.equal(out["targets"], batch.y) and out["loss"].ndim == 0


def test_loss_state_generator_is_shared_within_a_step():
    batch = _batch()
    a, b = batch.state("non-masked"), batch.state("masked")
    assert isinstance(a, LossState) and a.step == 3 and a.seed == 9
    assert torch.equal(torch.rand(5, generator=a.generator()), torch.rand(5, generator=b.generator()))
    other = Batch(batch.non_masked, batch.masked, batch.y, step=4, seed=9).state("masked")
    assert not torch.equal(torch.rand(5, generator=a.generator()), torch.rand(5, generator=other.generator()))


class _Cache(ImageCache):
    def __init__(self, n):  # noqa: D401 - random pixels, no files
        g = torch.Generator().manual_seed(0)
        self.non_masked = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
        self.masked = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
        self.labels = torch.arange(n) % 7


@pytest.mark.parametrize("train_on,vpp", [("mixed", 2), ("masked", 1)])
def test_an_epoch_visits_every_pair_view_once(train_on, vpp):
    spec = RunSpec(batch_size=4, image_size=8, augment="none", options=(("train_on", train_on),))
    paradigm = Baseline(parse_options([f"train_on={train_on}"], Baseline.options))
    trainer = Trainer(spec, Recorder(), paradigm, torch.device("cpu"))
    train_idx = np.array([0, 2, 3, 5, 6, 9, 10])  # 7 pairs: 14 items with mixed, 2 left for the last batch
    seen = Counter()
    steps = []
    for b in trainer.batches(_Cache(12), train_idx, torch.Generator().manual_seed(1), first_step=10):
        views = b.view.tolist() if b.view is not None else [0] * len(b.y)
        seen.update(zip(b.index.tolist(), views))
        steps.append(b.step)
    assert seen == Counter({(int(i), v): 1 for i in train_idx for v in range(vpp)})
    assert steps == list(range(10, 10 + len(steps)))


def test_option_bounds_fail_at_parsing():
    with pytest.raises(MsdeError, match=r"--opt p=2: must be <= 1"):
        check_options("resnet18", "distill", ["p=2"])
    with pytest.raises(MsdeError, match="expected an integer"):
        check_options("resnet18", "distill", ["teacher_epochs=1.5"])
    with pytest.raises(MsdeError, match="must be > 0"):
        check_options("resnet18", "contrastive", ["temperature=0"])


def test_methods_name_lists_options():
    res = CliRunner().invoke(main, ["methods", "scan"])
    assert res.exit_code == 0, res.output
    assert "backbone_lr_scale" in res.output and "0.01" in res.output and "in-tree" in res.output
    bad = CliRunner().invoke(main, ["methods", "nope"])
    assert bad.exit_code == 2 and "unknown model 'nope'" in bad.output


def test_schema_1_results_are_read_and_upgraded(tmp_path):
    from msde_bench import results as R

    (path,) = (ROOT / "leaderboard" / "results").glob("eac-baseline-synth-*.json")  # the synthetic set's
    current = json.loads(path.read_text())
    assert current["schema"] == R.SCHEMA
    old = {k: v for k, v in current.items() if k != "upgraded_from"}  # as schema 1 wrote it
    spec = dict(old["spec"], split=old["spec"]["protocol"])
    del spec["protocol"]
    spec["options"] = {("eac.lam" if k == "eac.flip_consistency_weight" else k): v for k, v in spec["options"].items()}
    old.update(schema="msde-bench/result/1", spec=spec, run_id=current["upgraded_from"]["run_id"])
    old_path = tmp_path / f"{old['run_id']}.json"
    R.write_json_atomic(old_path, old)

    res = R.load(old_path)  # read as it is
    assert res["schema"] == R.SCHEMA and res["spec"] == current["spec"]
    assert res["spec"]["options"]["eac.flip_consistency_weight"] == spec["options"]["eac.lam"]

    out = CliRunner().invoke(main, ["results", "upgrade", str(tmp_path)])  # rewritten under today's run id
    assert out.exit_code == 0 and "1 result files upgraded" in out.output
    (new,) = tmp_path.glob("*.json")
    assert new.name == path.name and R.load(new)["folds"] == current["folds"]
    assert json.loads(new.read_text())["upgraded_from"] == current["upgraded_from"]


def test_loss_weight_aliases_keep_the_official_spelling():
    assert check_options("eac", "baseline", ["lam=2"])["eac.flip_consistency_weight"] == 2.0
    assert check_options("dacl", "baseline", ["dacl.lamb=0.5"])["dacl.sparse_center_weight"] == 0.5
    with pytest.raises(MsdeError, match="must be >= 0"):
        check_options("dacl", "baseline", ["lamb=-1"])


def test_results_upgrade_fills_options_added_since_the_run(tmp_path):
    """A result from before an option existed gets it at its default (the old behaviour) and the
    run id the spec has today, so sweeps and --resume recognise it."""
    from msde_bench import results as R

    (path,) = (ROOT / "leaderboard" / "results").glob("scan-baseline-synth-*.json")  # the synthetic set's
    current = json.loads(path.read_text())
    older = dict(current, spec=dict(current["spec"], options={k: v for k, v in current["spec"]["options"].items()
                                                              if k != "scan.quirk_row_patches"}))
    older["run_id"] = RunSpec.from_dict(older["spec"]).run_id(older["dataset"]["name"])
    assert older["run_id"] != current["run_id"]
    R.write_json_atomic(tmp_path / f"{older['run_id']}.json", older)
    res = CliRunner().invoke(main, ["results", "upgrade", str(tmp_path)])
    assert res.exit_code == 0 and "1 result files upgraded" in res.output
    (new,) = tmp_path.glob("*.json")
    assert new.name == path.name and R.load(new)["spec"] == current["spec"]
    assert CliRunner().invoke(main, ["results", "upgrade", str(tmp_path)]).output.count("0 result files") == 1


def test_the_plugin_test_kit_runs_through_the_api_and_its_deprecated_form_is_gone(tiny_root, tmp_path):
    """msde_bench.testing sits below the command line (it imports no msde_bench.cli); the
    command-line `extra` of check_end_to_end, deprecated in 0.7.0, is removed in 0.8.0 as announced."""
    import subprocess
    import sys

    from msde_bench.testing import check_end_to_end

    code = "import sys, msde_bench.testing; print('msde_bench.cli' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    result = check_end_to_end("resnet18", "contrastive", tiny_root, tmp_path / "new", options={"alpha": 2})
    assert result["spec"]["options"]["alpha"] == 2.0
    with pytest.raises(TypeError):
        check_end_to_end("resnet18", "contrastive", tiny_root, tmp_path / "old", ["--opt", "alpha=2"])


#: the plugin API of the previous minor version (0.7): msde_bench.api's names and msde_bench.testing's
#: checks and fixtures. A name leaves only after a release that deprecated it (CONTRIBUTING).
API_0_7 = ["API_VERSION", "BackboneMethod", "Batch", "CLASS_NAMES", "Cell", "DataError", "Executor", "ExecutorOption",
           "FoldContext", "IMAGENET_MEAN", "IMAGENET_STD", "ImageCache", "LossState", "Method", "MsdeError",
           "NUM_CLASSES", "Option", "Output", "Pair", "PairedDataset", "Paradigm", "RunSpec", "Task", "build_spec",
           "cells_of", "collect", "compare_benchmark", "create_trunk", "cross_entropy_terms", "evaluate_benchmark",
           "hookimpl", "merge", "merge_all", "plan_sweep", "positive", "prepare_spec", "read_cell", "read_msde",
           "run_benchmark", "run_cell", "run_spec", "run_sweep", "spec_from_result"]
TESTING_0_7 = ["check_registered", "check_shapes", "check_one_step_reduces_loss", "check_fewer_classes",
               "check_end_to_end", "check_paradigm", "check_dataset", "tiny_root", "tiny_copy"]


def test_a_plugin_written_against_the_previous_minor_version_still_finds_its_names():
    from msde_bench import __version__, api, testing

    assert api.API_VERSION == ".".join(__version__.split(".")[:2])  # moves with each minor release
    missing = [n for n in API_0_7 if n not in api.__all__ or not hasattr(api, n)]
    assert not missing, f"msde_bench.api lost {missing} without a deprecation release"
    assert not [n for n in TESTING_0_7 if not hasattr(testing, n)]


def test_the_kit_checks_paradigm_and_dataset_plugins(tiny_root, tmp_path, monkeypatch):
    """msde_bench.testing's paradigm and dataset checks pass on built-ins and fail on a broken set."""
    from msde_bench import factory
    from msde_bench.data.pairs import Pair, PairedDataset
    from msde_bench.testing import check_dataset, check_paradigm

    result = check_paradigm("contrastive", tiny_root, tmp_path / "p", options={"alpha": 0.5})
    assert result["spec"]["options"]["alpha"] == 0.5
    with pytest.raises(AssertionError, match="not registered"):
        check_paradigm("nosuch", tiny_root, tmp_path / "q")
    ds = check_dataset(str(tiny_root))
    assert len(ds) > 0
    broken = PairedDataset("b", tmp_path, [Pair("x", 0, 1, tmp_path / "gone.png", tmp_path / "gone-m.png")])
    real = factory.load_dataset
    monkeypatch.setattr(factory, "load_dataset", lambda data, progress=None: broken if data == "broken:x" else real(data))
    with pytest.raises(AssertionError, match="x: an image is missing"):
        check_dataset("broken:x")


def test_a_conftest_that_imports_the_kit_first_gets_no_rewrite_warning(tmp_path):
    """A plugin's conftest that imports msde_bench.testing before naming it in pytest_plugins: the
    kit's asserts are still rewritten, without pytest's PytestAssertRewriteWarning."""
    import subprocess
    import sys

    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "conftest.py").write_text(
        "from msde_bench.testing import check_shapes  # noqa: F401\npytest_plugins = ['msde_bench.testing']\n")
    (tmp_path / "tests" / "test_a.py").write_text("def test_a(tiny_root):\n    assert tiny_root.is_dir()\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W",
                          "error::pytest.PytestAssertRewriteWarning", "tests"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0 and "1 passed" in run.stdout and "Warning" not in run.stdout, run.stdout[-2000:]
