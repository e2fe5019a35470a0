"""Term balance (issue 36): each loss part's share of the gradient, measured without changing the
training, recorded per epoch, summarised in the result, noted under 1 % on the result and the board."""

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from msde_bench import balance as BAL
from msde_bench.cli import main
from msde_bench.options import parse_options
from msde_bench.paradigms.base import Batch
from msde_bench.paradigms.contrastive import Contrastive
from msde_bench.spec import RunSpec
from msde_bench.training import Trainer, grad_shares, measured_batches
from tests.test_paradigms import Tiny


def _batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, 3, 6, 6, generator=g), torch.randn(n, 3, 6, 6, generator=g),
                 torch.tensor([0, 1, 1, 3][:n]))


def test_grad_shares_by_hand_on_the_parameters_every_part_reaches():
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    head = nn.Parameter(torch.tensor([5.0]))
    a = (3 * w).sum() + 100 * head.sum()  # gradient (3, 3) on w; head reached by `a` only
    b = (w * w).sum()  # gradient (2, 4) on w
    shares = {k: float(v) for k, v in grad_shares({"a": a, "b": b, "const": torch.tensor(1.0)}, [w, head]).items()}
    na, nb = 18 ** 0.5, 20 ** 0.5  # the head is left out: `b` never reaches it
    assert shares["a"] == pytest.approx(na / (na + nb)) and shares["b"] == pytest.approx(nb / (na + nb))
    assert shares["const"] == 0.0


def test_measured_batches_are_spread_over_the_epoch():
    assert measured_batches(52) == {0, 17, 34, 51}
    assert measured_batches(2) == {0, 1} and measured_batches(1) == {0} and measured_batches(0) == set()


def test_contrastive_alignment_share_grows_with_alpha_and_the_parts_sum_to_the_loss():
    shares = []
    for alpha in (1.0, 1e4):
        par = Contrastive({**parse_options([], Contrastive.options), "alpha": alpha})
        out = par.training_step(Tiny(), _batch())
        method = Tiny()
        out = par.training_step(method, _batch())
        assert torch.allclose(sum(out["parts"].values()), out["loss"])
        shares.append({k: float(v) for k, v in grad_shares(out["parts"], list(method.parameters())).items()})
    assert sum(shares[0].values()) == pytest.approx(1.0)
    assert shares[0]["align"] < shares[1]["align"]


def test_measuring_does_not_change_the_training():
    """The same steps with and without measurement leave the very same weights."""
    spec = RunSpec(paradigm="contrastive", epochs=1, batch_size=4, device="cpu")
    weights = []
    for measure in (False, True):
        method = Tiny()
        trainer = Trainer(spec, method, Contrastive(parse_options([], Contrastive.options)), torch.device("cpu"))
        for seed in range(3):
            out = trainer.train_step(_batch(seed=seed), measure=measure)
            assert ("grad_share" in out) == measure and "parts" not in out
        weights.append([p.detach().clone() for p in method.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def test_a_run_records_gradient_shares_and_notes_a_weak_cross_view_term(tiny_root, tmp_path):
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--paradigm", "contrastive", "--recipe", "quick",
                                    "--epochs", "2", "--folds", "2", "--fold", "0", "--image-size", "32",
                                    "--batch-size", "16", "--device", "cpu", "--out", str(tmp_path), "--no-progress",
                                    "--no-save-models", "--opt", "alpha=1"])
    assert res.exit_code == 0, res.output
    result = json.loads(next(tmp_path.glob("*.json")).read_text())
    for rec in result["folds"][0]["train_history"]:
        parts = {k: v for k, v in rec.items() if k.startswith("grad_share.")}
        assert set(parts) == {"grad_share.ce_non_masked", "grad_share.ce_masked", "grad_share.align"}
        assert sum(parts.values()) == pytest.approx(1.0)
    bal = result["balance"]
    assert bal["cross_view_terms"] == ["align"] and bal["grad_share"] < 0.01  # alpha = 1 on normalised maps
    assert "under 1 %" in bal["note"]
    show = CliRunner().invoke(main, ["results", "show", str(next(tmp_path.glob("*.json")))])
    assert show.exit_code == 0 and "grad_share" in show.output and "under 1 %" in show.output, show.output


def test_paradigms_command_explains_the_weights():
    out = CliRunner().invoke(main, ["paradigms"]).output
    assert "share of the gradient" in out and "contrastive: alpha" in out and "distill: lambda" in out


def _result(paradigm, history, options=None, balance=None):
    r = {"spec": {"paradigm": paradigm, "options": options or {}}, "folds": [{"train_history": history}]}
    if balance is not None:
        r["balance"] = balance
    return r


def test_older_results_are_judged_by_their_loss_terms():
    weak = _result("contrastive", [{"loss": 0.6, "align": 0.0006}], {"alpha": 1.0})
    strong = _result("contrastive", [{"loss": 0.6, "align": 0.0006}], {"alpha": 1000.0})
    assert BAL.of_result(weak)["loss_share"] == pytest.approx(0.001) and "note" in BAL.of_result(weak)
    assert "note" not in BAL.of_result(strong)
    assert BAL.board_note([weak]) == BAL.BOARD_NOTE_LOSS and BAL.board_note([strong]) is None
    assert BAL.of_result(_result("baseline", [{"loss": 1.0}])) is None
    measured = _result("contrastive", [], balance=BAL.measured(("align",), [
        {"train_history": [{"grad_share.align": 0.002, "grad_share.ce": 0.998}]}]))
    assert BAL.board_note([measured]) == BAL.BOARD_NOTE_GRAD


def test_the_committed_contrastive_rows_carry_the_note():
    """The committed M-CK+ contrastive rows predate gradient shares: their alignment term is under 0.1 %
    of their loss, and the leaderboard says so under them."""
    from pathlib import Path

    from msde_bench.leaderboard import render_dirs

    root = Path(__file__).resolve().parents[1]
    md, board = render_dirs([root / "leaderboard" / "results"])
    assert BAL.BOARD_NOTE_LOSS in md
    assert "Power: the smallest masked-accuracy difference from the top row" in md  # item 4: each table states it
    ckplus = next(t for t in board.tables if t.name == "m-ckplus48")
    group = ckplus.complete
    measured = 0
    for row, notes in zip(group.rows, group.notes):
        texts = [n["text"] for n in notes]
        shares = [BAL.of_result(r) for r in row.runs]
        if row.spec["paradigm"] == "contrastive" and "loss_share" in shares[0]:  # recorded before 0.9.0
            assert BAL.BOARD_NOTE_LOSS in texts
            assert all(b["loss_share"] < 0.001 for b in shares)
        elif row.spec["paradigm"] == "contrastive":  # since 0.9.0: its measured gradient share
            measured += 1
            share = min(b["grad_share"] for b in shares)  # the note: when any seed is under the floor
            assert (BAL.BOARD_NOTE_GRAD in texts) == (share < BAL.CROSS_VIEW_FLOOR), (share, texts)
        else:
            assert BAL.BOARD_NOTE_LOSS not in texts
    assert measured >= 1  # leaderboard/real-ckplus-paradigms.toml's alpha = 30 rows


# ---- power and the paired per-image test (issue 36, item 4) ------------------------------------


def test_detectable_difference_by_hand():
    from scipy import stats as st

    from msde_bench.stats import detectable_difference

    d = [0.01, -0.02, 0.03, 0.0, 0.05, -0.01, 0.02, 0.04, -0.03, 0.01]
    n, ratio = len(d), 1 / 9
    var = sum((x - sum(d) / n) ** 2 for x in d) / (n - 1)
    want = (st.t.ppf(0.975, n - 1) + st.t.ppf(0.8, n - 1)) * ((1 / n + ratio) * var) ** 0.5
    assert detectable_difference(d, ratio) == pytest.approx(want)
    assert detectable_difference([0.1], ratio) is None
    # more folds of the same spread detect a smaller difference
    assert detectable_difference(d * 3, ratio) < detectable_difference(d, ratio)


def test_mcnemar_on_discordant_images():
    import numpy as np

    from msde_bench.stats import paired_images

    a = np.array([[1] * 50 + [0] * 10 + [0] * 40])
    b = np.array([[1] * 50 + [1] * 10 + [0] * 40])  # b right on 10 images a got wrong, never the reverse
    out = paired_images(a, b)
    assert out["test"].startswith("McNemar") and out["discordant"] == (10, 0)
    assert out["p"] == pytest.approx(2 * 0.5 ** 10) and out["diff"] == pytest.approx(0.1)
    assert paired_images(a, a)["p"] == 1.0
    three = paired_images(np.repeat(a, 3, axis=0), np.repeat(b, 3, axis=0))
    assert three["test"].startswith("paired bootstrap") and three["p"] < 0.01 and three["ci"][0] > 0


def _fixed_split_run(tmp_path, name, correct, seed=0, samples=True):
    from msde_bench import samples as S

    lines = [dict(pair=f"p{i}", view=view, subject=0, label="happy", prediction="happy" if ok else "sad",
                  probs={}) for i, ok in enumerate(correct) for view in ("non-masked", "masked")]
    fold = {"fold": 0, "acc_masked": sum(correct) / len(correct), "n_test_pairs": len(correct), "n_train_pairs": 100}
    if samples:
        (tmp_path / name).mkdir()
        fold["samples_sha256"] = S.write(tmp_path / name / "fold0.samples.jsonl", {}, lines)
        fold["samples_file"] = f"{name}/fold0.samples.jsonl"
    return {"spec": {"seed": seed}, "folds": [fold], "protocol": {"folds": 1}, "_path": str(tmp_path / f"{name}.json")}


def test_a_fixed_split_is_compared_image_by_image(tmp_path):
    from msde_bench.board import Row, compare_rows

    top = Row("a", [_fixed_split_run(tmp_path, "a", [1] * 60 + [0] * 40)])
    other = Row("b", [_fixed_split_run(tmp_path, "b", [1] * 50 + [0] * 50)])
    out = compare_rows(top, other)
    assert out["test"].startswith("McNemar") and out["discordant"] == (0, 10) and out["p"] < 0.01
    assert 0 < out["detectable"] < 0.1
    blind = Row("c", [_fixed_split_run(tmp_path, "c", [1] * 50 + [0] * 50, samples=False)])
    assert compare_rows(top, blind) is None  # one value each and no predictions: no test at all


def test_a_grid_can_ask_its_cells_to_log_their_predictions(tmp_path):
    from msde_bench.grid import GridError, load_grid
    from msde_bench.sweep import plan

    grid = tmp_path / "g.toml"
    grid.write_text('out = "r"\nlog_samples = true\ndata = "synth:tiny"\nfolds = 2\nepochs = 1\n')
    assert load_grid(grid)[1] == {"out": "r", "log_samples": True}
    planned, _ = plan(grid, out=tmp_path / "r")
    assert all(task.log_samples for p in planned for task in p.tasks)
    grid.write_text('log_samples = "yes"\ndata = "synth:tiny"\n')
    with pytest.raises(GridError, match="log_samples must be true or false"):
        load_grid(grid)
