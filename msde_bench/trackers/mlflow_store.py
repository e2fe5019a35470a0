"""`--track mlflow`: MLflow runs through its client (mlflow-skinny is enough).

Where: MLFLOW_TRACKING_URI when it is set (a server, or `sqlite:///mlflow.db` with the full mlflow
package), else a local file store, `<track-dir>/mlruns` (MLflow 3 keeps its file store in
maintenance mode and asks for `MLFLOW_ALLOW_FILE_STORE=true`; msde-bench sets it only around its
own calls to that store). Nothing is sent anywhere unless MLFLOW_TRACKING_URI says so.

Experiment `msde-bench/<dataset name>`. One MLflow run per cell, named `<run_id> fold <k>`: the
spec as parameters (options as `opt.<key>`), each epoch's values (step = epoch), the fold's numbers
and its cell file as an artifact; a failed cell ends FAILED with its error as a tag. One MLflow
run per result, named `<run_id>`: the spec, each metric's mean (`<key>`) and std (`<key>_std`) over
folds and the result file as an artifact, and the cells of that run become its child runs. Tags
`msde_bench.run_id`, `msde_bench.fold`, `msde_bench.kind` (cell or run), `msde_bench.version`.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from msde_bench import __version__
from msde_bench.errors import import_extra
from msde_bench.trackers.base import TrackedCell, Tracker, parameters, scalars, summary_scalars

URI_ENV = "MLFLOW_TRACKING_URI"
FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"


def _metrics(values: dict[str, float], step: int = 0) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(key, float(value), now, step) for key, value in values.items()]


def _params(spec: dict) -> list:
    from mlflow.entities import Param

    return [Param(key, value[:6000]) for key, value in parameters(spec).items()]


class MlflowTracker(Tracker):
    name = "mlflow"
    description = "MLflow runs in <track-dir>/mlruns, or at MLFLOW_TRACKING_URI when it is set"

    @classmethod
    def check(cls) -> None:
        import_extra("mlflow.tracking", "--track mlflow", "mlflow")

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.uri = os.environ.get(URI_ENV) or (self.folder / "mlruns").resolve().as_uri()
        self.run_id: str | None = None  # the MLflow run of this instance's cell
        self._client = None

    @contextlib.contextmanager
    def _store(self):
        """The client, with the local file store allowed for the duration of the call."""
        local = self.uri.startswith("file:") and FILE_STORE_ENV not in os.environ
        if local:
            os.environ[FILE_STORE_ENV] = "true"
        try:
            if self._client is None:
                from mlflow.tracking import MlflowClient

                self._client = MlflowClient(tracking_uri=self.uri)
            yield self._client
        finally:
            if local:
                os.environ.pop(FILE_STORE_ENV, None)

    def _experiment(self, client, dataset: dict) -> str:
        """The experiment of the dataset's runs (made by the first process that needs it)."""
        name = f"msde-bench/{dataset['name']}"
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(name)
        except Exception:  # noqa: BLE001 - another worker made it in between
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _start(self, client, spec: dict, dataset: dict, run_name: str, tags: dict) -> str:
        run = client.create_run(self._experiment(client, dataset), run_name=run_name,
                                tags={"msde_bench.version": __version__, **tags})
        client.log_batch(run.info.run_id, params=_params(spec))
        return run.info.run_id

    def start_cell(self, cell: TrackedCell) -> None:
        with self._store() as client:
            self.run_id = self._start(client, cell.spec, cell.dataset, f"{cell.run_id} fold {cell.fold}",
                                      {"msde_bench.run_id": cell.run_id, "msde_bench.fold": str(cell.fold),
                                       "msde_bench.kind": "cell"})

    def log_epoch(self, epoch: int, values: dict[str, float]) -> None:
        with self._store() as client:
            client.log_batch(self.run_id, metrics=_metrics(values, epoch))

    def end_cell(self, record: dict, cell_file: Path) -> None:
        with self._store() as client:
            client.log_batch(self.run_id, metrics=_metrics(scalars(record)))
            client.log_artifact(self.run_id, str(cell_file))
            client.set_terminated(self.run_id, "FINISHED")

    def fail_cell(self, error: str) -> None:
        if self.run_id is None:
            return
        with self._store() as client:
            client.set_tag(self.run_id, "msde_bench.error", error[:5000])
            client.set_terminated(self.run_id, "FAILED")

    def log_result(self, result: dict, result_file: Path) -> None:
        with self._store() as client:
            parent = self._start(client, result["spec"], result["dataset"], result["run_id"],
                                 {"msde_bench.run_id": result["run_id"], "msde_bench.kind": "run"})
            client.log_batch(parent, metrics=_metrics(summary_scalars(result)))
            client.log_artifact(parent, str(result_file))
            experiment = client.get_run(parent).info.experiment_id
            cells = client.search_runs([experiment], filter_string=(
                f"tags.`msde_bench.run_id` = '{result['run_id']}' and tags.`msde_bench.kind` = 'cell'"))
            for cell in cells:  # the run's cells (also earlier tries of a fold) become its children
                client.set_tag(cell.info.run_id, "mlflow.parentRunId", parent)
            client.set_terminated(parent, "FINISHED")
