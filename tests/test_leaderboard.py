"""The leaderboard: aggregation, significance marks, incomplete and superseded runs, --check."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from msde_bench import results as R
from msde_bench.board import group_results as build
from msde_bench.board import paired_p
from msde_bench.cli import main
from msde_bench.errors import MsdeError
from msde_bench.leaderboard import render_results
from msde_bench.mdtext import md_text
from msde_bench.metrics import summarise
from msde_bench.spec import RunSpec


def make_result(model="resnet18", paradigm="baseline", seed=0, nm=(0.8, 0.7), m=(0.5, 0.4), complete=True,
                created="2026-01-01T00:00:00+00:00", lam=None, n_folds=None):
    options = {"train_on": "mixed"} if paradigm == "baseline" else {}
    if lam is not None:
        options["lambda"] = lam
    spec = RunSpec(model=model, paradigm=paradigm, seed=seed, folds=n_folds or len(nm),
                   options=tuple(sorted(options.items()))).to_dict()
    folds = []
    for i, (a, b) in enumerate(zip(nm, m)):
        folds.append(dict(fold=i, test_subjects=[i], n_test_pairs=10, acc_non_masked=a, acc_masked=b,
                          acc_overall=(a + b) / 2, mask_gap=a - b, macro_f1_non_masked=a, macro_f1_masked=b,
                          pair_agreement=0.5, per_class={}, confusion_non_masked=[], confusion_masked=[],
                          train_seconds=10.0 + i, train_images_per_second=100.0, n_params=11_000_000))
    return dict(schema=R.SCHEMA, run_id=RunSpec.from_dict(spec).run_id("synth-small"), created=created, finished=created,
                msde_bench_version="0.1.0", git_sha=None, spec=spec,
                dataset=dict(name="synth-small", fingerprint="abc", n_pairs=840, n_subjects=120),
                protocol=dict(name="msde-clean", version=1, folds=n_folds or len(nm), split="clean",
                              selection="last", run_folds=list(range(len(nm))), complete=complete),
                env={}, folds=folds, summary=summarise(folds))


def write(d, *results, legacy=False):
    """Each result as `<run id>.json` (a second result of the same run id as `<run id>-<i>.json`), sealed
    (record digests on its folds, as the leaderboard ranks) unless `legacy`."""
    d.mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(results):
        name = f"{r['run_id']}.json" if not (d / f"{r['run_id']}.json").exists() else f"{r['run_id']}-{i}.json"
        if not legacy and not R.has_digests(r):
            r = R.seal(r, "2026-01-01T00:00:00+00:00", "test")
        R.write_json_atomic(d / name, R.validate(r))
    return d


def test_aggregation_over_folds_and_seeds_by_hand(tmp_path):
    a = make_result(seed=0, m=(0.5, 0.4))
    b = make_result(seed=1, m=(0.6, 0.3))
    tables, superseded = build([dict(a, _path="a"), dict(b, _path="b")])
    (rows,) = tables.values()
    assert len(rows) == 1 and superseded == []
    mean, std, n = rows[0].stat("acc_masked")
    vals = [0.5, 0.4, 0.6, 0.3]
    assert n == 4 and mean == pytest.approx(0.45) and std == pytest.approx(np.std(vals, ddof=1))
    text = render_results([dict(a, _path="a"), dict(b, _path="b")], [], ["x"])
    assert "0.450 ± 0.129" in text and "2 × 2" in text
    assert "10.5 s (?)" in text  # median train time per fold; these results record no device


def test_train_time_names_the_device(tmp_path):
    cpu = dict(make_result(), env=dict(device="cpu", threads=2, device_name="x86_64"))
    gpu = dict(make_result(seed=1), env=dict(device="cuda:0", threads=16, device_name="NVIDIA H200"))
    text = render_results([dict(cpu, _path="a")], [], ["x"])
    assert "10.5 s (cpu, 2 threads)" in text
    text = render_results([dict(cpu, _path="a"), dict(gpu, _path="b")], [], ["x"])
    assert "10.5 s (NVIDIA H200; cpu, 2 threads)" in text
    one = dict(make_result(), env=dict(device="cpu", threads=1, device_name="x86_64"))
    assert "10.5 s (cpu, 1 thread)" in render_results([dict(one, _path="a")], [], ["x"])


def test_newest_run_of_a_spec_and_seed_wins():
    old = make_result(m=(0.1, 0.1), created="2026-01-01T00:00:00+00:00")
    new = make_result(m=(0.5, 0.4), created="2026-02-01T00:00:00+00:00")
    tables, superseded = build([dict(new, _path="n"), dict(old, _path="o")])
    (rows,) = tables.values()
    assert rows[0].stat("acc_masked")[0] == pytest.approx(0.45)
    assert [r["created"] for r in superseded] == ["2026-01-01T00:00:00+00:00"]
    text = render_results([dict(new, _path="n"), dict(old, _path="o")], [], ["x"])
    assert "## Superseded runs" in text and "2026-01-01T00:00:00+00:00" in text


def test_corrected_resampled_t_test_and_interval_by_hand():
    from scipy.stats import t as student

    from msde_bench.stats import corrected_ci, corrected_ttest

    assert paired_p({(0, 0): 0.5, (0, 1): 0.6}, {(0, 0): 0.5, (0, 1): 0.6}, 0.25) == 1.0
    assert paired_p({(0, 0): 0.5}, {(0, 0): 0.4}, 0.25) is None
    a = {(0, i): v for i, v in enumerate([0.6, 0.7, 0.65, 0.8, 0.75])}
    b = {(0, i): v for i, v in enumerate([0.5, 0.72, 0.6, 0.7, 0.74])}
    d = [0.1, -0.02, 0.05, 0.1, 0.01]  # a - b
    n, mean = 5, sum(d) / 5
    var = sum((x - mean) ** 2 for x in d) / (n - 1)
    ratio = 1 / 4  # 5-fold: test / train = 1 / 4
    t = mean / ((1 / n + ratio) * var) ** 0.5
    assert paired_p(a, b, ratio) == pytest.approx(2 * student.sf(abs(t), n - 1))
    assert corrected_ttest(d, ratio) > corrected_ttest(d, 0.0)  # the correction widens; ratio 0 = plain t-test
    from scipy.stats import ttest_rel

    assert corrected_ttest(d, 0.0) == pytest.approx(ttest_rel(list(a.values()), list(b.values())).pvalue)
    vals = [0.6, 0.7, 0.65, 0.8, 0.75]
    m = sum(vals) / 5
    s2 = sum((x - m) ** 2 for x in vals) / 4
    half = student.ppf(0.975, 4) * ((1 / 5 + ratio) * s2) ** 0.5
    assert corrected_ci(vals, ratio) == pytest.approx((m - half, m + half))
    assert corrected_ci([0.5], ratio) is None


def test_significance_marks_and_best_values_on_a_constructed_case():
    best = make_result(model="best", nm=(0.9, 0.9, 0.9, 0.9), m=(0.80, 0.82, 0.78, 0.81))
    close = make_result(model="close", nm=(0.8, 0.8, 0.8, 0.8), m=(0.81, 0.79, 0.79, 0.80))  # ~ the same
    far = make_result(model="far", nm=(0.95, 0.95, 0.95, 0.95), m=(0.30, 0.35, 0.31, 0.33))
    text = render_results([dict(r, _path=r["run_id"]) for r in (far, close, best)], [], ["x"])
    lines = [ln for ln in text.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert [ln.split("|")[2].strip() for ln in lines] == ["best", "close", "far"]  # ranked by masked accuracy
    assert "**0.803 ± 0.017**" in lines[0]  # best masked
    assert re.search(r"0\.798 ± 0\.010 \[[0-9., ]+\] †", lines[1])  # not significantly different
    assert "†" not in lines[2]
    assert "**0.950 ± 0.000**" in lines[2]  # best non-masked is the far row's
    assert "corrected resampled t-test" in text and "p ≥ 0.05" in text
    assert "95 % confidence interval" in text


def test_incomplete_runs_are_shown_apart_and_not_ranked():
    done = make_result(model="done")
    partial = make_result(model="partial", nm=(0.9,), m=(0.9,), complete=False, n_folds=2)
    text = render_results([dict(done, _path="d"), dict(partial, _path="p")], [], ["x"])
    head, tail = text.split("Incomplete runs")
    assert "| 1   | done" in head and "partial" not in head
    assert "| –   | partial" in tail


def test_different_protocols_never_share_a_table():
    clean = make_result()
    faithful = make_result(model="other")
    faithful["protocol"] = dict(faithful["protocol"], name="msde-faithful", split="faithful", selection="best-on-test")
    text = render_results([dict(clean, _path="c"), dict(faithful, _path="f")], [], ["x"])
    assert text.count("\n## synth-small") == 2 and "optimistic by construction" in text


def test_cli_check_skip_malformed_strict_and_determinism(tmp_path):
    res = write(tmp_path / "res", make_result(model="a"), make_result(model="b", m=(0.2, 0.1)))
    (res / "broken.json").write_text('{"schema": "msde-bench/result/1"}')
    (res / "run.partial.json").write_text("{}")  # partial files are not results
    out = tmp_path / "LB.md"
    runner = CliRunner()
    r1 = runner.invoke(main, ["leaderboard", "--results", str(res), "--output", str(out)])
    assert r1.exit_code == 0 and "2 results, 4 figures, index.html, 1 skipped" in r1.output
    first = out.read_bytes()
    assert b"broken.json" in first and b"missing field" in first
    assert first.startswith(b"<!-- generated by `msde-bench leaderboard`")
    runner.invoke(main, ["leaderboard", "--results", str(res), "--output", str(out)])
    assert out.read_bytes() == first  # deterministic
    assert runner.invoke(main, ["leaderboard", "--results", str(res), "--output", str(out), "--check"]).exit_code == 0
    write(res, make_result(model="c", m=(0.9, 0.9)))  # new results without regenerating
    stale = runner.invoke(main, ["leaderboard", "--results", str(res), "--output", str(out), "--check"])
    assert stale.exit_code == 1 and "out of date" in stale.output and "lines differ" in stale.output
    assert out.read_bytes() == first  # --check never writes
    runner.invoke(main, ["leaderboard", "--results", str(res), "--output", str(out)])
    assert runner.invoke(main, ["leaderboard", "--results", str(res), "--output", str(out), "--check"]).exit_code == 0
    strict = runner.invoke(main, ["leaderboard", "--results", str(res), "--output", str(out), "--strict"])
    assert strict.exit_code == 2 and "broken.json" in strict.output and "missing field" in strict.output


def test_results_list_and_show(tmp_path):
    a = make_result(model="alpha")
    res = write(tmp_path / "res", a)
    runner = CliRunner()
    listed = runner.invoke(main, ["results", "--results", str(res)])
    assert listed.exit_code == 0 and a["run_id"] in listed.output and "2/2" in listed.output
    csv = runner.invoke(main, ["results", "--results", str(res), "--format", "csv"])
    assert csv.output.splitlines()[0].startswith("run_id,model,paradigm")
    shown = runner.invoke(main, ["results", "--results", str(res), "--format", "json", "show", "alpha-"])
    assert shown.exit_code == 0, shown.output
    folds = json.loads(shown.output)
    assert [f["masked"] for f in folds] == [0.5, 0.4]
    md = runner.invoke(main, ["results", "--results", str(res), "--format", "markdown", "show", a["run_id"]])
    assert md.output.splitlines()[0].startswith("| fold") and "| 0.5 " in md.output
    missing = runner.invoke(main, ["results", "--results", str(res), "show", "nope"])
    assert missing.exit_code == 2 and "0 matching result files" in missing.output


def test_every_row_names_the_plugin_that_provided_its_method():
    from msde_bench.board import load_all
    from msde_bench.leaderboard import DEFAULT_RESULTS

    root = Path(__file__).resolve().parents[1]
    found, problems = load_all([root / DEFAULT_RESULTS])
    assert not problems and all(r["method_plugin"]["distribution"] == "msde-bench" for r in found)
    text = render_results(found, [], ["leaderboard/results"])
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert rows and all(ln.rstrip(" |").endswith(("(in-tree)", "(built-in)")) for ln in rows)
    assert "| scn 1.0.0 (in-tree) " in text and "| msde-bench 0.2.0 (built-in) " in text
    # ResNet-18's mixed baseline: seed 0 ran under msde-bench 0.1.0, seeds 1 and 2 under 0.2.0; the row names both
    assert "| msde-bench 0.1.0 (built-in); msde-bench 0.2.0 (built-in) " in text


def test_a_row_that_cannot_be_told_from_chance_is_marked():
    near = make_result(model="near", nm=(0.16, 0.12, 0.15, 0.14), m=(0.13, 0.15, 0.14, 0.16))
    good = make_result(model="good", nm=(0.9, 0.88, 0.91, 0.9), m=(0.8, 0.82, 0.78, 0.81))
    text = render_results([dict(r, _path=r["run_id"]) for r in (near, good)], [], ["x"])
    rows = {ln.split("|")[2].strip(): ln for ln in text.splitlines() if ln.startswith("| ") and ln[2].isdigit()}
    assert rows["near"].count("◦") == 3 and "◦" not in rows["good"]
    assert "◦: cannot be told from chance (1/7)" in text


def test_macro_f1_scores_only_the_classes_present():
    import numpy as np

    from msde_bench.metrics import fold_metrics

    y = np.array([0, 1, 2, 3, 0, 1])  # classes 4-6 absent from this fold
    m = fold_metrics(y, y, y)
    assert m["macro_f1_non_masked"] == 1.0 and m["macro_f1_masked"] == 1.0
    wrong = fold_metrics(y, y, np.array([0, 1, 2, 3, 0, 6]))  # a prediction of an absent class counts
    assert wrong["macro_f1_masked"] < 1.0


def test_each_table_states_its_budget_and_precision():
    a = make_result(paradigm="contrastive")
    same = render_results([dict(a, _path="a"), dict(make_result(), _path="b")], [], ["x"])
    # RunSpec()'s budget is `epochs` (a spec without one ran before the rule) and its precision fp32
    assert "Budget: equal epochs (`--budget epochs`, the reference code's rule)" in same
    assert "The mixed baselines train identically under both rules" in same  # make_result() is one
    assert "Precision: fp32." in same
    b = make_result(paradigm="contrastive", seed=1)
    b["spec"] = dict(b["spec"], budget="steps", precision="bf16")
    b["run_id"] = "resnet18-contrastive-synth-small-" + RunSpec.from_dict(b["spec"]).digest()
    mixed = render_results([dict(a, _path="a"), dict(b, _path="b")], [], ["x"])
    assert "Budget: rows differ (each result's spec records its rule): `epochs`: " in mixed and "; `steps`: " in mixed
    assert "budget=steps" in mixed and "precision=bf16" in mixed  # the rows' variants say which is which
    assert "Precision: rows differ" in mixed


def test_settings_with_their_own_column_are_not_repeated_in_the_paradigm_label():
    """Rows of one model and paradigm that differ by their start (or recipe) are told apart by the
    init (or recipe) column, not by `init=...` in the paradigm label (it said `init=None`)."""
    a = make_result()
    b = make_result()
    b["spec"] = dict(b["spec"], init="pretrain:synth:small")
    b["pretrained"] = {"dataset": {"name": "synth-small"}}
    b["run_id"] = "resnet18-baseline-synth-small-" + RunSpec.from_dict(b["spec"]).digest()
    md = render_results([dict(a, _path="a"), dict(b, _path="b")], [], ["x"])
    assert "init=" not in md and "pretrained on synth-small" in md and "| random " in md


def test_a_run_of_every_reference_quirk_is_labelled_so():
    from msde_bench.api import build_spec

    spec = build_spec("resnet18", "distill", recipe="quick", device="cpu", quirks="reference").to_dict()
    r = make_result(paradigm="distill")
    r["spec"], r["run_id"] = spec, "resnet18-distill-synth-small-" + RunSpec.from_dict(spec).digest()
    assert "| distill \\[reference quirks\\] |" in render_results([dict(r, _path="a")], [], ["x"]).replace("  ", " ")


def test_notes_stand_next_to_the_rows_they_match(tmp_path):
    from msde_bench.board import read_notes

    notes = tmp_path / "notes.toml"
    notes.write_text('[[note]]\nmodel = "resnet18"\nparadigm = "contrastive"\ntext = "alignment hurts here"\n'
                     '[[note]]\n"options.lambda" = 5.0\ntext = "never shown"\n')
    rows = [dict(make_result(paradigm="contrastive"), _path="a"), dict(make_result(), _path="b")]
    text = render_results(rows, [], ["x"], read_notes(notes))
    (line,) = [ln for ln in text.splitlines() if "| contrastive" in ln]
    assert "contrastive <sup>1</sup>" in line and "<sup>1</sup> alignment hurts here" in text
    assert "never shown" not in text and text.count("<sup>1</sup>") == 2
    notes.write_text('[[note]]\nmodle = "resnet18"\ntext = "x"\n')
    with pytest.raises(MsdeError, match="note\\[0\\] matches on 'modle'"):
        read_notes(notes)
    out = CliRunner().invoke(main, ["leaderboard", "--results", str(tmp_path), "--notes", str(tmp_path / "no.toml"),
                                    "--output", str(tmp_path / "lb.md")])
    assert out.exit_code == 2 and "--notes" in out.output and "file not found" in out.output


def test_names_from_result_files_cannot_shift_columns_or_inject_html(tmp_path):
    import re

    evil = make_result(model="x|y<script>alert(1)", paradigm="contrastive")
    evil["dataset"] = dict(evil["dataset"], name="set|<b>")
    evil["spec"] = dict(evil["spec"], recipe="quick|`rm`")
    evil["run_id"] = R.expected_run_id(evil)  # named by its contents, as every valid result is
    text = render_results([dict(evil, _path="a"), dict(make_result(), _path="b")], [("bad|file<i>.json", "oops <b>|")], ["x"])
    outside_code = re.sub(r"`[^`]*`", "", text)  # inside a code span markdown shows `<i>` as text
    assert "<script>" not in outside_code and "<b>" not in outside_code and "<i>" not in outside_code
    assert "`bad\\|file<i>.json`" in text
    assert "x\\|y&lt;script&gt;alert(1)" in text and "## set\\|&lt;b&gt;" in text
    header = next(ln for ln in text.splitlines() if ln.startswith("| #"))
    cols = len(re.split(r"(?<!\\)\|", header))
    for line in (ln for ln in text.splitlines() if ln.startswith("| ") and "---" not in ln):
        assert len(re.split(r"(?<!\\)\|", line)) == cols, line
    write(tmp_path / "r", evil)
    out = CliRunner().invoke(main, ["results", "--results", str(tmp_path / "r"), "--format", "markdown"])
    assert out.exit_code == 0 and "<script>" not in out.output and "x\\|y&lt;script&gt;" in out.output


def _mistype(r: dict, how: str) -> dict:
    r = json.loads(json.dumps(r))
    if how == "protocol.folds a string":
        r["protocol"]["folds"] = "5"
    elif how == "dataset.name an int":
        r["dataset"]["name"] = 7
    elif how == "spec.seed a list":
        r["spec"]["seed"] = [0]
    elif how == "spec.epochs a string":
        r["spec"]["epochs"] = "6"
    elif how == "summary empty":
        r["summary"] = {}
    elif how == "summary mean a string":
        r["summary"]["acc_masked"]["mean"] = "high"
    return r


@pytest.mark.parametrize("how,problem", [
    ("protocol.folds a string", "protocol.folds should be an integer"),
    ("dataset.name an int", "dataset.name should be a string"),
    ("spec.seed a list", "spec is not a valid run spec (--seed [0]: expected an integer)"),
    ("spec.epochs a string", "spec is not a valid run spec (--epochs '6': expected an integer)"),
    ("summary empty", "summary is empty"),
    ("summary mean a string", "summary.acc_masked should hold numbers"),
    ("a folder named x.json", "is a folder, not a result file"),
])
def test_mistyped_result_files_are_reported_and_skipped(tmp_path, how, problem):
    d = write(tmp_path / "r", make_result())
    if how == "a folder named x.json":
        (d / "x.json").mkdir()
    else:
        R.write_json_atomic(d / "bad.json", _mistype(make_result(paradigm="contrastive"), how))
    out = CliRunner().invoke(main, ["leaderboard", "--results", str(d), "--output", str(tmp_path / "lb.md")])
    assert out.exit_code == 0, out.output
    text = (tmp_path / "lb.md").read_text()
    md = md_text(problem)  # markdown text: brackets and underscores escaped, shown as written
    assert "## Skipped files" in text and md in text and "| 1   | resnet18 |" in text
    strict = CliRunner().invoke(main, ["leaderboard", "--strict", "--results", str(d), "--output", str(tmp_path / "s.md")])
    assert strict.exit_code == 2 and problem in strict.output and "Traceback" not in strict.output
    listed = CliRunner().invoke(main, ["results", "--results", str(d)])
    assert listed.exit_code == 0 and "skipped" in listed.output and problem in listed.output


def test_each_table_describes_its_own_dataset():
    synth = make_result()
    synth["dataset"] = dict(synth["dataset"], root="synth:small")
    real = make_result(paradigm="contrastive")
    real["dataset"] = dict(name="msd-e", fingerprint="f00d", n_pairs=1960, n_subjects=142, root="/data/MSD-E")
    text = render_results([dict(synth, _path="a"), dict(real, _path="b")], [], ["x"])
    sections = {part.split(" ", 1)[0]: part for part in text.split("\n## ")[1:]}
    assert "Smoke numbers on the embedded synthetic set `synth:small`" in sections["synth-small"]
    assert "_Dataset msd-e (1960 pairs of 142 subjects, fingerprint `f00d`)" in sections["msd-e"]
    assert "Smoke numbers" not in sections["msd-e"] and "Smoke numbers" not in text.split("\n## ")[0]


def test_figures_are_drawn_embedded_byte_stable_and_checked(tmp_path):
    d = write(tmp_path / "r", make_result(), make_result(paradigm="contrastive", nm=(0.6, 0.5), m=(0.3, 0.2)))
    out = tmp_path / "lb" / "README.md"
    args = ["leaderboard", "--results", str(d), "--output", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    figs = sorted(p.name for p in (tmp_path / "lb" / "figures").iterdir() if p.name != "RENDERER")
    assert len(figs) == 4 and {p.rsplit(".", 1)[1] for p in figs} == {"png", "svg"}
    assert (tmp_path / "lb" / "figures" / "RENDERER").read_text().startswith("matplotlib ")
    text = out.read_text()
    for name in figs:
        assert f"figures/{name}" in text
    png = (tmp_path / "lb" / "figures" / next(f for f in figs if f.endswith("accuracy.png"))).read_bytes()
    assert png.startswith(b"\x89PNG") and b"Software" not in png[:4096]
    svg = (tmp_path / "lb" / "figures" / next(f for f in figs if f.endswith("accuracy.svg"))).read_text()
    assert "<dc:date>" not in svg and "masked accuracy" in svg  # text stays text (svg.fonttype none)
    before = {p.name: p.read_bytes() for p in (tmp_path / "lb" / "figures").iterdir()}
    assert CliRunner().invoke(main, args).exit_code == 0  # a second render: the same bytes
    assert {p.name: p.read_bytes() for p in (tmp_path / "lb" / "figures").iterdir()} == before
    assert CliRunner().invoke(main, [*args, "--check"]).exit_code == 0
    changed = tmp_path / "lb" / "figures" / figs[0]
    changed.write_bytes(changed.read_bytes() + b" ")
    stale = CliRunner().invoke(main, [*args, "--check"])
    assert stale.exit_code == 1 and f"figures differ: figures/{figs[0]}" in stale.output
    assert CliRunner().invoke(main, args).exit_code == 0
    (tmp_path / "lb" / "figures" / "old-accuracy.png").write_bytes(b"x")
    leftover = CliRunner().invoke(main, [*args, "--check"])
    assert leftover.exit_code == 1 and "stale figures: old-accuracy.png" in leftover.output
    assert CliRunner().invoke(main, args).exit_code == 0 and not (tmp_path / "lb" / "figures" / "old-accuracy.png").exists()


def test_figures_of_another_matplotlib_are_not_compared(tmp_path):
    d = write(tmp_path / "r", make_result())
    out = tmp_path / "lb" / "README.md"
    args = ["leaderboard", "--results", str(d), "--output", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    (tmp_path / "lb" / "figures" / "RENDERER").write_text("matplotlib 0.0\n")
    for p in (tmp_path / "lb" / "figures").glob("*.png"):
        p.write_bytes(b"drawn elsewhere")
    res = CliRunner().invoke(main, [*args, "--check"])
    assert res.exit_code == 0 and "figures not compared (drawn with matplotlib 0.0" in res.output
    out.write_text(out.read_text() + "edited\n")  # the markdown is still compared
    assert CliRunner().invoke(main, [*args, "--check"]).exit_code == 1


def test_train_time_is_the_median_fold_with_distill_teachers_counted_and_wide_spreads_flagged():
    base = make_result(nm=(0.8, 0.7, 0.6), m=(0.5, 0.4, 0.3))  # folds of 10, 11, 12 s
    distill = make_result(paradigm="distill", nm=(0.8, 0.7, 0.6), m=(0.5, 0.4, 0.3))
    for f in distill["folds"]:
        f["paradigm"] = dict(teacher="cache x.pt", teacher_train_seconds=20.0)
    distill["folds"][2]["paradigm"]["teacher_train_seconds"] = None  # a loaded teacher that records no time
    distill["folds"][2]["train_seconds"] = 32.0
    loaded = make_result(model="eac", nm=(0.8, 0.7, 0.6), m=(0.5, 0.4, 0.3))
    loaded["folds"][2]["train_seconds"] = 40.0  # one fold 4x the fastest: a loaded machine
    text = render_results([dict(base, _path="a"), dict(distill, _path="b"), dict(loaded, _path="c")], [], ["x"])
    cells = {(c[2], c[3]): c for c in ([c.strip() for c in line.split("|")] for line in text.splitlines()
                                       if line.startswith("| "))}
    assert "11.0 s (?)" in cells["resnet18", "baseline (mixed)"]  # median of 10, 11, 12
    assert "31.0 s (?)" in cells["resnet18", "distill"]  # median of 10 + 20, 11 + 20, 32 + 0
    assert "11.0 s (?) ‡" in cells["eac", "baseline (mixed)"]
    assert "distill's including the training of its teacher" in text and "‡: the fold times spread widely" in text


def test_a_fixed_split_without_identities_shows_one_value_and_says_what_its_split_is():
    """FER-2013's case: the official split (holdout, one fold, one seed) of a set that records no subjects.
    A single value has no spread (no "± 0.000"), and the table names the split as the protocol instead of
    calling its one fold image-level."""
    rows = [make_result(model=m, nm=(nm,), m=(ms,)) for m, nm, ms in (("a", 0.595, 0.252), ("b", 0.567, 0.439))]
    for r in rows:
        r["protocol"].update(split="holdout", name="msde-holdout", folds=1)
        r["dataset"].update(folds_by="image", subjects_from="none: one subject per image (folds are image-level)")
        r["folds"][0]["n_test_pairs"] = 3589
    text = render_results([dict(r, _path=r["run_id"]) for r in rows], [], ["x"])
    lines = [ln for ln in text.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert "**0.439**" in lines[0] and "0.595" in lines[1] and "±" not in "".join(lines)
    assert "(holdout, 1 fold)" in text and "A value without ± is one fold of one seed" in text
    assert "0.008 for the 3589 test pairs" in text
    assert "**No identities:**" in text and "Image-level folds" not in text
    two = make_result(model="c", nm=(0.8, 0.7), m=(0.5, 0.4))  # several values: the spread is shown
    assert "0.450 ± 0.071" in render_results([dict(two, _path="c")], [], ["x"])


def test_a_markdown_link_from_a_result_file_stays_text(tmp_path):
    evil = make_result(model="[click me](javascript:alert(3))", nm=(0.6, 0.5), m=(0.3, 0.2))
    evil["method_plugin"] = {"plugin": "p", "version": "1", "source": "x", "distribution": "![img](http://e/x.png)"}
    text = render_results([dict(evil, _path="a")], [], ["x"])
    assert "\\[click me\\](javascript:alert(3))" in text and "](javascript:" not in text.replace("\\](", "")
    assert "![img](" not in text
    write(tmp_path / "r", evil)
    out = CliRunner().invoke(main, ["results", "--results", str(tmp_path / "r"), "--format", "markdown"])
    assert out.exit_code == 0 and "[click me](" not in out.output and "\\[click me\\]" in out.output


def test_a_metric_added_to_the_table_is_shown_everywhere(tmp_path, monkeypatch):
    """Adding a metric is the metric function plus one row of metrics.METRICS: the result check,
    the summary, `results`, `results show`, the leaderboard, its page and `run`'s summary read the
    table (here a toy metric, the worse view's accuracy, computed by hand into the folds)."""
    from msde_bench import metrics as M
    from msde_bench.board import load_board
    from msde_bench.cli import summary_table
    from msde_bench.leaderboard import board_files

    toy = M.Metric("acc_worse_view", "worse view", "worse_view", chance=True,
                   views=("summary", "fold", "run", "compare", "table"))
    monkeypatch.setattr(M, "METRICS", (*M.METRICS, toy))
    a = make_result(model="alpha")
    for f in a["folds"]:
        f["acc_worse_view"] = min(f["acc_non_masked"], f["acc_masked"])
    a["summary"] = summarise(a["folds"])
    assert a["summary"]["acc_worse_view"]["mean"] == pytest.approx(0.45)
    res = write(tmp_path / "res", a)
    runner = CliRunner()
    listed = runner.invoke(main, ["results", "--results", str(res), "--format", "json"])
    assert json.loads(listed.output)[0]["worse_view"] == 0.45
    shown = runner.invoke(main, ["results", "--results", str(res), "--format", "json", "show", "alpha-"])
    assert [f["worse_view"] for f in json.loads(shown.output)] == [0.5, 0.4]
    text = render_results([dict(a, _path="a")], [], ["x"])
    header = next(ln for ln in text.splitlines() if ln.startswith("| #"))
    assert header.split("|")[-6].strip() == "worse view" and "0.450 ± 0.071" in text
    assert "worse view" in summary_table(a)
    page = board_files(load_board([res]), tmp_path)["index.html"].decode()
    assert '"acc_worse_view", "worse view"' in page
    # a result from before the metric: a dash in its column, never a crash or a made-up number
    old = make_result(model="beta")
    text = render_results([dict(a, _path="a"), dict(old, _path="b")], [], ["x"])
    beta = next(ln for ln in text.splitlines() if "| beta" in ln)
    assert beta.split("|")[-6].strip() == "–"
    write(res, old)
    rows = json.loads(runner.invoke(main, ["results", "--results", str(res), "--format", "json"]).output)
    assert [r["worse_view"] for r in rows] == [0.45, None]
    page = board_files(load_board([res]), tmp_path)["index.html"].decode()
    assert '"acc_worse_view": null' in page and r'{"bold": false, "notes": [], "tail": "", "text": "\u2013"}' in page
    bad = dict(a, folds=[dict(a["folds"][0], acc_worse_view=1.5), a["folds"][1]])
    with pytest.raises(Exception, match=r"acc_worse_view = 1.5 is not a fraction"):
        R.validate(bad)


def test_intervals_stay_within_what_a_metric_can_take():
    """A 2-fold row's t interval reaches past [0, 1] (t(1) is 12.7): it is clipped, and the note says so."""
    r = make_result(model="wide", nm=(0.99, 0.6), m=(0.02, 0.35))
    (row,) = build([dict(r, _path="a")])[0].popitem()[1]
    for key in ("acc_non_masked", "acc_masked", "pair_agreement"):
        lo, hi = row.ci(key)
        assert 0.0 <= lo <= hi <= 1.0
    assert row.ci("acc_masked")[0] == 0.0 and row.ci("acc_non_masked")[1] == 1.0  # both clipped here
    text = render_results([dict(r, _path="a")], [], ["x"])
    assert "[0.000, " in text and ", 1.000]" in text and "clipped to the values a metric can take" in text


def test_figures_give_every_row_its_own_label_and_never_run_out_of_markers():
    """Issue 40 (6, 13): 100 rows that differ only in their learning rate draw (markers cycle), every row
    with its own numbered label in both figures (the key beside the scatter, the gap figure's bars), the
    key in columns beside the axes; over FIGURE_ROWS rows the figures say which rows they draw; and two
    rows of one model and paradigm that differ only in their start get a label each (neither hides the
    other in the mask-gap bars)."""
    import pandas as pd

    from msde_bench.figures import FIGURE_ROWS, _labeller, accuracy_figure, figure_rows_note, gap_figure, table_figures

    def row(model, paradigm, variant, init, gap):
        return dict(model=model, paradigm=paradigm, variant=variant, init=init, recipe="real48",
                    acc_non_masked_mean=0.8, acc_non_masked_std=0.01, acc_non_masked_ci=(0.79, 0.81),
                    acc_masked_mean=0.8 - gap, acc_masked_std=0.01, acc_masked_ci=(0.7, 0.72),
                    mask_gap_mean=gap, mask_gap_std=0.01, mask_gap_ci=(gap - 0.01, gap + 0.01))

    many = pd.DataFrame([row("resnet18", "baseline (mixed)", f"lr={i / 1000:g}", "random", 0.1) for i in range(1, 101)])
    scatter, bars = accuracy_figure(many, "t"), gap_figure(many, "t")
    for i in range(1, 101):
        label = f"{i}. resnet18 · baseline (mixed) (lr={i / 1000:g})"
        assert label in scatter["svg"].decode() and label in bars["svg"].decode(), label
    width = lambda png: int.from_bytes(png[16:20], "big")  # noqa: E731  the PNG header's width, height
    height = lambda png: int.from_bytes(png[20:24], "big")  # noqa: E731
    few = accuracy_figure(many.head(10), "t")
    assert width(scatter["png"]) > 1.3 * width(few["png"])  # the 100-row key took columns beside the axes
    assert height(bars["png"]) > 4 * height(gap_figure(many.head(10), "t")["png"])  # a readable bar per row
    assert figure_rows_note(FIGURE_ROWS) is None
    longer = pd.concat([many, many.head(1)], ignore_index=True)
    assert f"first {FIGURE_ROWS} rows of {FIGURE_ROWS + 1}" in figure_rows_note(FIGURE_ROWS + 1)
    assert f"rows 1-{FIGURE_ROWS} of {FIGURE_ROWS + 1}" in table_figures(longer, "t")[1]["svg"].decode()
    starts = pd.DataFrame([row("resnet18", "distill", "", "random", 0.17),
                           row("resnet18", "distill", "", "pretrained on m-fer2013", 0.16)])
    label = _labeller(starts)
    assert len({label(r) for _, r in starts.iterrows()}) == 2
    assert label(starts.iloc[1]) == "distill, pretrained on m-fer2013"
    same = starts.assign(init="random").iloc[:1]
    assert _labeller(same)(same.iloc[0]) == "distill"  # one start: no start in the label


def test_differing_settings_cost_linear_in_the_rows():
    """Issue 40 (7): the settings that tell a group's rows apart are computed once per group, in reads
    linear in its rows (they had been compared with every other row for each row: cubic, 1,000 results
    did not render in 15 minutes); and they are still the right ones."""
    reads = 0

    class Counting(dict):
        def get(self, *a):
            nonlocal reads
            reads += 1
            return super().get(*a)

    def items(n):
        return [("g", Counting(lr=i / 1000, batch_size=32, seed=0, extra=None if i % 2 else 1)) for i in range(n)]

    out = R.differing([*items(4), ("h", Counting(lr=1.0))])
    assert out[:4] == ["extra=1, lr=0.0", "extra=None, lr=0.001", "extra=1, lr=0.002", "extra=None, lr=0.003"]
    assert out[4] == ""  # alone in its group: nothing differs
    reads = 0
    R.differing(items(400))
    assert reads <= 3 * 400 * 4, reads  # quadratic would be ~ 400 x 400 x 4


def test_markdown_from_result_fields_renders_as_its_characters(tmp_path):
    """Issue 40 (11): emphasis, strikethrough and bare links in a result's fields show as the characters
    they are, in the leaderboard and in `results --format markdown`, as GitHub renders them (cmark-gfm)."""
    import cmarkgfm

    evil_model = "**bold**_it_~~gone~~"
    evil = make_result(model=evil_model, paradigm="contrastive", nm=(0.6, 0.5), m=(0.3, 0.2))
    evil["dataset"] = dict(evil["dataset"], name="see_http://evil.example/x_and_www.evil.example")
    evil["method_plugin"] = {"plugin": "p", "version": "1", "source": "installed", "distribution": "mail a.b@evil.example"}
    evil["run_id"] = R.expected_run_id(evil)
    write(tmp_path / "r", evil, make_result())
    board = CliRunner().invoke(main, ["leaderboard", "--results", str(tmp_path / "r"), "--output", "-"])
    listed = CliRunner().invoke(main, ["results", "--results", str(tmp_path / "r"), "--format", "markdown"])
    assert board.exit_code == 0 and listed.exit_code == 0, board.output + listed.output
    for md in (board.output, listed.output):
        html = cmarkgfm.github_flavored_markdown_to_html(md).replace("\u2060", "")
        assert "**bold**_it_~~gone~~" in html
        assert "<strong>bold</strong>" not in html and "<em>it</em>" not in html and "<del>gone</del>" not in html
        assert "evil.example" not in "".join(re.findall(r'href="[^"]*"', html))
    html = cmarkgfm.github_flavored_markdown_to_html(board.output).replace("\u2060", "")
    assert "see_http://evil.example/x_and_www.evil.example" in html and "mail a.b@evil.example" in html
