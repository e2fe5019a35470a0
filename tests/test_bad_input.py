"""Bad input is one clear line naming the option or file, exit code 2, and nothing written."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from msde_bench.cli import main
from msde_bench.errors import MsdeError, SpecError
from msde_bench.factory import build_paradigm
from msde_bench.spec import RunSpec
from msde_bench.training import Trainer
from tests.test_contract import Recorder, _Cache


@pytest.mark.parametrize("args,message", [
    (["--batch-size", "1"], "--batch-size 1: must be >= 2"),
    (["--batch-size", "0"], "--batch-size 0: must be >= 2"),
    (["--epochs", "0"], "--epochs 0: must be >= 1"),
    (["--epochs", "-1"], "--epochs -1: must be >= 1"),
    (["--lr", "nan"], "--lr nan: must be a finite number"),
    (["--lr", "inf"], "--lr inf: must be a finite number"),
    (["--lr", "-1"], "--lr -1.0: must be > 0"),
    (["--image-size", "0"], "--image-size 0: must be >= 1"),
    (["--image-size", "-5"], "--image-size -5: must be >= 1"),
    (["--seed", "-1"], "--seed -1: must be >= 0"),
    (["--seed", "99999999999"], "--seed 99999999999: must be <= 4294967295"),
    (["--paradigm", "contrastive", "--opt", "alpha=nan"], "--opt alpha=nan: must be a finite number"),
    (["--paradigm", "distill", "--opt", "lambda=inf"], "--opt lambda=inf: must be a finite number"),
])
def test_numbers_out_of_range_fail_before_anything_runs(tmp_path, args, message):
    out = CliRunner().invoke(main, ["run", "--data", "synth:tiny", "--device", "cpu", "--out", str(tmp_path / "o"),
                                    *args])
    assert out.exit_code == 2, out.output
    assert out.output.strip().splitlines()[-1].startswith(f"error: {message}")
    assert "Traceback" not in out.output and not (tmp_path / "o").exists()


def test_a_result_with_an_out_of_range_setting_is_malformed():
    with pytest.raises(SpecError, match="--epochs 0"):
        RunSpec(epochs=0)
    with pytest.raises(ValueError):  # results.validate reports ValueErrors of the spec as a malformed file
        RunSpec.from_dict(dict(RunSpec().to_dict(), lr=float("nan")))


class _Nan(Recorder):
    def loss(self, x, y, out, state):
        terms = super().loss(x, y, out, state)
        return {**terms, "loss": terms["loss"] * float("nan")}


def test_a_non_finite_loss_stops_the_fold_with_a_clear_message():
    spec = RunSpec(batch_size=4, image_size=8, augment="none", epochs=2)
    trainer = Trainer(spec, _Nan(), build_paradigm(spec), torch.device("cpu"))
    with pytest.raises(MsdeError, match=r"the loss became non-finite in epoch 1 \(.*loss = nan\).*Lower --lr"):
        trainer.fit(_Cache(8), np.arange(8), torch.Generator().manual_seed(0))


def test_an_epoch_without_a_batch_is_an_error_not_a_silent_skip():
    spec = RunSpec(batch_size=4, image_size=8, augment="none", options=(("train_on", "masked"),))
    trainer = Trainer(spec, Recorder(), build_paradigm(spec), torch.device("cpu"))
    with pytest.raises(MsdeError, match="epoch 1 had no batch to train on: 1 training pairs"):
        trainer.fit(_Cache(4), np.arange(1), torch.Generator().manual_seed(0))
