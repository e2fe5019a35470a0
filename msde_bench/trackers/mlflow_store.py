"""`--track mlflow`: MLflow runs through its client (mlflow-skinny is enough).

Where: MLFLOW_TRACKING_URI when it is set (a server, or `sqlite:///mlflow.db` with the full mlflow
package), else a local file store, `<track-dir>/mlruns` (MLflow 3 keeps its file store in
maintenance mode and asks for `MLFLOW_ALLOW_FILE_STORE=true`; msde-bench sets it only around its
own calls to that store). Nothing is sent anywhere unless MLFLOW_TRACKING_URI says so. A server gets
one try of 10 s per call (unless MLFLOW_HTTP_REQUEST_MAX_RETRIES / _TIMEOUT are set); the first call it
does not answer is one warning and turns MLflow tracking off for the rest of the process.

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
from msde_bench.errors import MsdeError, import_extra
from msde_bench.trackers.base import TrackedCell, Tracker, parameters, scalars, summary_scalars

URI_ENV = "MLFLOW_TRACKING_URI"
FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"
#: a server's calls: one try, 10 s at most (MLflow's own defaults: 7 retries with backoff and 120 s each,
#: minutes per call to a server that is down); a user's own MLFLOW_HTTP_REQUEST_* settings win
REMOTE_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
#: the servers this process found unreachable: their tracking is off for the rest of it
_UNREACHABLE: set[str] = set()


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
        """The client, with the local file store allowed for the duration of the call, and for a server
        a short timeout without retries (MLflow's defaults retry for minutes), unless the user set them."""
        local = self.uri.startswith("file:")
        settings = {FILE_STORE_ENV: "true"} if local else dict(REMOTE_SETTINGS)
        added = [k for k in settings if k not in os.environ]
        os.environ.update({k: settings[k] for k in added})
        try:
            if self._client is None:
                from mlflow.tracking import MlflowClient

                self._client = MlflowClient(tracking_uri=self.uri)
            yield self._client
        finally:
            for k in added:
                os.environ.pop(k, None)

    def _do(self, action) -> None:
        """`action(client)`, unless this process found the server unreachable before (then nothing); the
        first failure of a server turns it off for the rest of the process with one message (the tracker's
        warning), so that an unreachable server costs seconds once, not minutes per fold."""
        if self.uri in _UNREACHABLE:
            return
        with self._store() as client:
            try:
                action(client)
            except Exception as e:
                if self.uri.startswith("file:"):
                    raise
                _UNREACHABLE.add(self.uri)
                raise MsdeError(f"MLflow at {self.uri} did not answer ({type(e).__name__}); MLflow tracking is "
                                "off for the rest of this run (the results are unchanged)") from None

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
        def act(client):
            self.run_id = self._start(client, cell.spec, cell.dataset, f"{cell.run_id} fold {cell.fold}",
                                      {"msde_bench.run_id": cell.run_id, "msde_bench.fold": str(cell.fold),
                                       "msde_bench.kind": "cell"})

        self._do(act)

    def log_epoch(self, epoch: int, values: dict[str, float]) -> None:
        if self.run_id is not None:
            self._do(lambda client: client.log_batch(self.run_id, metrics=_metrics(values, epoch)))

    def end_cell(self, record: dict, cell_file: Path) -> None:
        def act(client):
            client.log_batch(self.run_id, metrics=_metrics(scalars(record)))
            client.log_artifact(self.run_id, str(cell_file))
            client.set_terminated(self.run_id, "FINISHED")

        if self.run_id is not None:
            self._do(act)

    def fail_cell(self, error: str) -> None:
        def act(client):
            client.set_tag(self.run_id, "msde_bench.error", error[:5000])
            client.set_terminated(self.run_id, "FAILED")

        if self.run_id is not None:
            self._do(act)

    def log_result(self, result: dict, result_file: Path) -> None:
        def act(client):
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

        self._do(act)
