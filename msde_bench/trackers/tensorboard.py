"""`--track tensorboard`: TensorBoard event files through torch.utils.tensorboard.

One TensorBoard run per cell, `<track-dir>/tensorboard/<run_id>/fold<k>`: the scalars of each
epoch (step = epoch), the spec as text and, when the cell ends, its hyperparameters with the fold's
numbers (TensorBoard's HPARAMS tab compares cells). One per result, `<run_id>/result`: the spec's
hyperparameters with each metric's mean and std over folds, and the result file's path.
`tensorboard --logdir tracking/tensorboard` shows them.
"""

from __future__ import annotations

import json
from pathlib import Path

from msde_bench.errors import import_extra
from msde_bench.trackers.base import TrackedCell, Tracker, parameters, scalars, summary_scalars


def _writer(folder: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder))


class TensorBoardTracker(Tracker):
    name = "tensorboard"
    description = "TensorBoard event files under <track-dir>/tensorboard/<run_id>/fold<k> (tensorboard --logdir)"

    @classmethod
    def check(cls) -> None:
        import_extra("torch.utils.tensorboard", "--track tensorboard", "tensorboard")  # (the tensorboard package)

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.writer = None
        self.params: dict[str, str] = {}

    def start_cell(self, cell: TrackedCell) -> None:
        self.params = parameters(cell.spec)
        self.writer = _writer(self.folder / "tensorboard" / cell.run_id / f"fold{cell.fold}")
        self.writer.add_text("spec", _spec_text(cell.spec, cell.dataset))

    def log_epoch(self, epoch: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, epoch)
        self.writer.flush()

    def end_cell(self, record: dict, cell_file: Path) -> None:
        numbers = {f"fold/{k}": v for k, v in scalars(record).items()}
        self.writer.add_hparams(self.params, numbers, run_name=".")
        self.writer.add_text("cell_file", str(cell_file))
        self.writer.close()

    def fail_cell(self, error: str) -> None:
        if self.writer is not None:
            self.writer.add_text("error", error)
            self.writer.close()

    def log_result(self, result: dict, result_file: Path) -> None:
        writer = _writer(self.folder / "tensorboard" / result["run_id"] / "result")
        writer.add_text("spec", _spec_text(result["spec"], result["dataset"]))
        writer.add_text("result_file", str(result_file))
        writer.add_hparams(parameters(result["spec"]), {f"run/{k}": v for k, v in summary_scalars(result).items()},
                           run_name=".")
        writer.close()


def _spec_text(spec: dict, dataset: dict) -> str:
    """The spec and the dataset as a markdown code block (TensorBoard's text tab renders markdown)."""
    about = {k: dataset[k] for k in ("name", "fingerprint", "n_pairs", "n_subjects", "folds_by") if k in dataset}
    return "    " + json.dumps(dict(spec=spec, dataset=about), indent=2, sort_keys=True).replace("\n", "\n    ")
