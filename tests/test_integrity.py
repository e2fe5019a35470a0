"""Results that cannot lie (issue 26): a result carries the run id its contents name, and its folds
are the protocol's, each once; such a file is refused with one line, never listed or ranked."""

import json

import pytest
from click.testing import CliRunner

from msde_bench import results as R
from msde_bench.cli import main
from msde_bench.errors import ResultError
from msde_bench.mdtext import md_text
from tests.test_leaderboard import make_result, write


def _bad(how: str) -> dict:
    r = make_result(nm=(0.8, 0.7), m=(0.5, 0.4))
    if how == "edited spec":  # a better-looking recipe written into a finished result
        r["spec"] = dict(r["spec"], lr=0.5, epochs=25)
    elif how == "edited dataset":
        r["dataset"] = dict(r["dataset"], name="msd-e")
    elif how == "repeated fold":
        r["folds"][1] = dict(r["folds"][1], fold=0)
    elif how == "fold outside the protocol":
        r["folds"][1] = dict(r["folds"][1], fold=7)
    elif how == "complete with a fold missing":
        r["protocol"] = dict(r["protocol"], folds=3)
        r["spec"] = dict(r["spec"], folds=3)
        r["run_id"] = R.expected_run_id(r)
    elif how == "edited summary":  # issue 40: no digest covers the summary
        r["summary"] = dict(r["summary"], acc_masked=dict(r["summary"]["acc_masked"], mean=0.99))
    elif how == "summary of a metric no fold has":
        r["summary"] = dict(r["summary"], acc_secret=dict(mean=0.99, std=0.0, n=2))
    return r


@pytest.mark.parametrize("how, problem", [
    ("edited spec", "is not the one its contents name"),
    ("edited dataset", "is not the one its contents name"),
    ("repeated fold", "fold 0 appears 2 times"),
    ("fold outside the protocol", "fold 7 is not one of the protocol's folds 0-1"),
    ("complete with a fold missing", "marked complete but holds folds [0, 1] of the protocol's 3"),
    ("edited summary", "summary.acc_masked.mean is 0.99 but its folds give 0.45: the summary was edited"),
    ("summary of a metric no fold has", "summary.acc_secret: no fold records acc_secret"),
])
def test_an_edited_or_inconsistent_result_is_refused_never_ranked(tmp_path, how, problem):
    bad = _bad(how)
    with pytest.raises(ResultError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        R.validate(json.loads(json.dumps(bad)))
    good = make_result(model="scn", nm=(0.6, 0.6), m=(0.3, 0.3))
    folder = tmp_path / "r"
    write(folder, good)
    (folder / "edited.json").write_text(json.dumps(bad))
    out = CliRunner().invoke(main, ["leaderboard", "--results", str(folder), "--output", str(tmp_path / "LB.md")])
    text = (tmp_path / "LB.md").read_text()
    assert out.exit_code == 0 and "edited.json" in text and md_text(problem.split(" [")[0]) in text
    ranked = [ln for ln in text.splitlines() if ln.startswith("| 1 ")]
    assert len(ranked) == 1 and "scn" in ranked[0]  # only the good result is a row
    out = CliRunner().invoke(main, ["leaderboard", "--results", str(folder), "--output", str(tmp_path / "LB.md"),
                                    "--strict"])
    assert out.exit_code != 0 and "edited.json" in out.output


TINY = ["--recipe", "quick", "--epochs", "1", "--folds", "2", "--image-size", "32", "--batch-size", "16",
        "--device", "cpu", "--no-progress", "--no-save-models"]


@pytest.fixture
def finished(tiny_root, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    (path,) = out.glob("*.json")
    return out, path, R.load(path)


def _edit_cell(out, run, fold=0, acc=0.95):
    cell = out / run["run_id"] / f"fold{fold}.json"
    obj = json.loads(cell.read_text())
    obj["record"]["acc_masked"] = acc
    cell.write_text(json.dumps(obj))
    return cell


def test_an_edited_cell_is_retrained_on_resume_and_refused_by_merge(finished, tiny_root):
    out, path, run = finished
    cell = _edit_cell(out, run)
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--out", str(out), "--resume", *TINY])
    assert res.exit_code == 0, res.output  # the result is complete: --resume returns it as it is
    path.unlink()
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--out", str(out), "--resume", *TINY])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())  # rich wraps long lines
    assert "does not match its record digest" in said and "training fold 0 again" in said
    again = R.load(path)
    assert again["folds"][0]["acc_masked"] == run["folds"][0]["acc_masked"] != 0.95  # retrained, deterministic
    cell = _edit_cell(out, run)
    res = CliRunner().invoke(main, ["results", "merge", str(out)])
    assert res.exit_code == 2 and str(cell) in res.output and "record digest" in res.output
    assert R.load(path)["folds"][0]["acc_masked"] == run["folds"][0]["acc_masked"]  # the good result is kept


def test_an_edited_result_fold_is_refused(finished):
    out, path, run = finished
    edited = json.loads(path.read_text())
    edited["folds"][1]["acc_masked"] = 0.99
    with pytest.raises(ResultError, match=r"folds\[1\] does not match its record digest"):
        R.validate(edited)
    del edited["folds"][1]["record_sha256"]  # and without its digest: 0.6 always writes one
    with pytest.raises(ResultError, match=r"folds\[1\] has no record digest"):
        R.validate(edited)
    old = json.loads(path.read_text())
    old["msde_bench_version"] = "0.5.0"  # a version before digests claimed, and the digests deleted (issue 40, 3):
    for f in old["folds"]:
        del f["record_sha256"]
    later = sorted(set(old) - R.PRE_DIGEST_KEYS)[0]  # but it holds what only later versions write
    with pytest.raises(ResultError, match=f"claims msde-bench 0.5.0, which wrote no record digests, but carries "
                                          f"'{later}', which only later versions write: edited"):
        R.validate(old)
    for key in set(old) - R.PRE_DIGEST_KEYS:
        del old[key]
    old["folds"][0]["model_sha256"] = "0" * 64  # a fold key of 0.11
    with pytest.raises(ResultError, match=r"folds\[0\] carries '.*', which only later versions write: edited"):
        R.validate(old)
    for f in old["folds"]:
        for key in set(f) - R.PRE_DIGEST_FOLD_KEYS:
            del f[key]
    R.validate(old)  # what 0.5 wrote: read as before (the leaderboard ranks it only under --allow-legacy)


def test_a_file_without_digests_is_ranked_only_when_allowed_or_sealed(tmp_path):
    """Issue 40 (3): a result without record digests (from before 0.6.0) is skipped by the leaderboard,
    with the reason, unless --allow-legacy; `results seal` adds the digests (numbers untouched), after
    which it is ranked, and an edit to it is refused again."""
    legacy = make_result(model="scn", nm=(0.6, 0.6), m=(0.3, 0.3))
    folder = write(write(tmp_path / "r", make_result()), legacy, legacy=True)
    path = folder / f"{legacy['run_id']}.json"
    out = CliRunner().invoke(main, ["leaderboard", "--results", str(folder), "--output", str(tmp_path / "LB.md")])
    text = (tmp_path / "LB.md").read_text()
    assert out.exit_code == 0 and "## Skipped files" in text and "no record digests" in text
    ranks = lambda text: [ln.split("|")[1].strip() for ln in text.splitlines() if ln[:3] in ("| 1", "| 2")]  # noqa: E731
    assert "--allow-legacy" in text and ranks(text) == ["1"]
    out = CliRunner().invoke(main, ["leaderboard", "--results", str(folder), "--output", str(tmp_path / "LB.md"),
                                    "--allow-legacy"])
    text = (tmp_path / "LB.md").read_text()
    assert out.exit_code == 0 and "## Skipped files" not in text and ranks(text) == ["1", "2"]
    before = json.loads(path.read_text())
    sealed = CliRunner().invoke(main, ["results", "seal", str(path)])
    assert sealed.exit_code == 0 and "1 of 1 result files sealed" in sealed.output, sealed.output
    after = json.loads(path.read_text())
    assert after["sealed"]["by"] and [f.pop("record_sha256") for f in after["folds"]]
    assert {k: v for k, v in after.items() if k != "sealed"} == before  # only the digests and the seal added
    again = CliRunner().invoke(main, ["results", "--results", str(folder), "seal"])
    assert again.exit_code == 0 and "0 of 2 result files sealed" in again.output, again.output
    out = CliRunner().invoke(main, ["leaderboard", "--results", str(folder), "--output", str(tmp_path / "LB.md")])
    text = (tmp_path / "LB.md").read_text()
    assert out.exit_code == 0 and "## Skipped files" not in text and ranks(text) == ["1", "2"]
    edited = json.loads(path.read_text())
    edited["folds"][0]["acc_masked"] = 0.9
    path.write_text(json.dumps(edited))
    out = CliRunner().invoke(main, ["leaderboard", "--results", str(folder), "--output", str(tmp_path / "LB.md")])
    assert "does not match its record digest" in (tmp_path / "LB.md").read_text()


def test_merge_never_replaces_a_complete_result_with_other_numbers_unless_forced(finished):
    out, path, run = finished
    cell = out / run["run_id"] / "fold1.json"
    obj = json.loads(cell.read_text())
    obj["record"]["acc_masked"] = 0.42
    obj["record_sha256"] = R.record_digest(obj["record"])  # consistent, e.g. a cell trained on another machine
    cell.write_text(json.dumps(obj))
    res = CliRunner().invoke(main, ["results", "merge", str(out)])
    assert res.exit_code == 2 and "not replaced" in res.output and str(path) in res.output
    assert R.load(path)["folds"][1]["acc_masked"] == run["folds"][1]["acc_masked"]
    res = CliRunner().invoke(main, ["results", "merge", str(out), "--force"])
    assert res.exit_code == 0, res.output
    assert R.load(path)["folds"][1]["acc_masked"] == 0.42
    kept = path.with_name(path.name + ".replaced")
    assert json.loads(kept.read_text())["folds"][1]["acc_masked"] == run["folds"][1]["acc_masked"]


def test_a_truncated_cell_is_called_corrupt(finished):
    out, path, run = finished
    cell = out / run["run_id"] / "fold1.json"
    cell.write_text(cell.read_text()[:200])
    res = CliRunner().invoke(main, ["results", "merge", str(out)])
    assert res.exit_code == 2 and f"{cell}: corrupt" in res.output and "missing" not in res.output


def test_a_file_name_that_is_not_utf8_is_one_line(tiny_copy, tmp_path):
    import os
    import shutil

    src = next((tiny_copy / "MSD-E").iterdir())
    for folder in ("MSD-E", "MSD-ME"):
        shutil.copy(src, os.path.join(os.fsencode(tiny_copy / folder), b"0_0_\xff\xfe.png"))
    (tiny_copy / "Paired_files.txt").unlink(missing_ok=True)
    res = CliRunner().invoke(main, ["data", "validate", str(tiny_copy)])
    assert res.exit_code == 2 and "0_0_\\xff\\xfe.png: its file name is not valid UTF-8" in res.output, res.output
    assert "Traceback" not in res.output
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_copy), "--out", str(out), *TINY])
    assert res.exit_code == 2 and "not valid UTF-8" in res.output and not out.exists()


def test_a_grid_of_a_million_runs_is_refused_at_once(tmp_path):
    grid = tmp_path / "huge.toml"
    grid.write_text('data = "synth:tiny"\nseed = [' + ", ".join(map(str, range(1000))) + ']\nepochs = ['
                    + ", ".join(map(str, range(1, 1001))) + ']\n')
    res = CliRunner().invoke(main, ["sweep", str(grid), "--dry-run"])  # counted, not expanded: answers at once
    assert res.exit_code == 2 and "expands to 1,000,000 runs" in res.output and "--max-runs" in res.output
    small = tmp_path / "small.toml"
    small.write_text('data = "synth:tiny"\nepochs = 1\nseed = [0, 1, 2]\n')
    res = CliRunner().invoke(main, ["sweep", str(small), "--dry-run", "--max-runs", "2"])
    assert res.exit_code == 2 and "expands to 3 runs" in res.output
    res = CliRunner().invoke(main, ["sweep", str(small), "--dry-run", "--max-runs", "3", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output


def test_an_image_size_that_cannot_fit_is_refused_before_anything_is_decoded(tiny_root, tmp_path, monkeypatch):
    from msde_bench import runner

    monkeypatch.setattr(runner, "available_memory", lambda: 2 * 10**9)  # a 2 GB machine, whatever this one has
    out = tmp_path / "out"
    args = ["run", "--data", str(tiny_root), "--out", str(out), "--recipe", "quick", "--epochs", "1", "--folds", "2",
            "--batch-size", "16", "--device", "cpu", "--no-progress"]
    res = CliRunner().invoke(main, [*args, "--image-size", "4096"])
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "--image-size 4096: the 56 pairs decoded at 4096 px take 5.6 GB" in said, said
    assert "above the 2.0 GB of memory available" in said and not out.exists()
    res = CliRunner().invoke(main, [*args, "--image-size", "128", "--fold", "0"])
    said = " ".join(res.output.split())
    assert res.exit_code == 0 and "--image-size 128 is 4x the images' own 32 px" in said, said


def test_a_result_under_another_file_name_is_read_and_said(tmp_path):
    """Issue 40 (12): a result whose file name is not its run id is listed and ranked (its contents
    name the run), and `results` and the leaderboard name the mismatch."""
    good = make_result(model="scn", nm=(0.6, 0.6), m=(0.3, 0.3))
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "renamed.json").write_text(json.dumps(R.seal(good, "2026-01-01", "test")))
    listed = CliRunner().invoke(main, ["results", "--results", str(folder)])
    assert listed.exit_code == 0 and good["run_id"] in listed.output
    assert f"note {folder / 'renamed.json'}: its file name is not its run id ({good['run_id']}.json)" in listed.output
    out = CliRunner().invoke(main, ["leaderboard", "--results", str(folder), "--output", str(tmp_path / "LB.md")])
    text = (tmp_path / "LB.md").read_text()
    assert out.exit_code == 0 and "## Notes on files" in text and "renamed.json" in text
    assert any(ln.startswith("| 1 ") and "scn" in ln for ln in text.splitlines())
