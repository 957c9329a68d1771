"""``restore --engine ray``: the same restore jobs, spread over a Ray cluster with Ray Data.

The inputs travel through ``Dataset.map_batches`` to a pool of :class:`RestoreActor` workers, each of which loads the
models once and runs :func:`oldphoto.restore.jobs.restore_job` (no restore logic lives here). Workers write outputs
atomically; the driver only collects the records. A worker process that dies mid-file is restarted by Ray and its
file retried at most :data:`MAX_RETRIES` times; after that the file is recorded as failed. Requires the optional
extra ``oldphoto[ray]``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oldphoto.errors import ConfigError, DiskFullError, EngineError
from oldphoto.inputs import Job
from oldphoto.restore.jobs import JobOutputs, JobRecord, remove_partial_outputs, restore_job
from oldphoto.restore.pipeline import RestoreOptions

log = logging.getLogger(__name__)

MAX_RETRIES = 2
"""Attempts after the first for a file whose worker died (a crash, an out-of-memory kill)."""
STOP_FIELD = "stop_run"
WARNINGS_FIELD = "worker_warnings"
"""A record's warnings from the worker (an alpha channel dropped, 16-bit levels rounded, pages left out): Ray does
not forward a worker's log to the driver, so they travel with the record and the driver says them."""
FAULT_ENV = "OLDPHOTO_FAULT_INJECTION"
"""Testing only: ``kill-once:DIR`` kills a worker once per file, between writing a photo's temporary file and
renaming it (``DIR`` keeps the per-file markers); ``kill-always:NAME`` kills it on every attempt at file NAME."""


@dataclass(frozen=True)
class RaySettings:
    """How the Ray engine runs: ``workers`` actors of ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs each,
    on the cluster at ``address`` (None: start a local Ray on this machine)."""

    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    address: str | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: need at least 1")
        if self.cpus_per_worker <= 0 or self.gpus_per_worker < 0:
            raise ConfigError("--cpus-per-worker must be above 0 and --gpus-per-worker 0 or more")


@dataclass(frozen=True)
class RuntimeSettings:
    """What each worker passes to :func:`oldphoto.runtime.make_runtime` (threads None: the worker's CPUs)."""

    device: str = "auto"
    precision: str = "auto"
    tile: int | None = None
    tile_overlap: int | None = None
    threads: int | None = None


def _inject_fault(source: Path) -> None:
    """Testing only (see :data:`FAULT_ENV`)."""
    fault = os.environ.get(FAULT_ENV, "")
    mode, _, argument = fault.partition(":")
    if mode == "kill-always" and source.name == argument:
        os._exit(3)
    if mode == "kill-once" and argument:
        marker = Path(argument) / f"{source.name}.killed"
        if marker.exists():
            return
        marker.touch()
        import oldphoto.atomic as atomic

        def die_before_rename(*_: Any) -> None:  # the temporary file is complete, the output not yet in place
            os._exit(3)

        atomic.os.replace = die_before_rename  # type: ignore[attr-defined]


class AttemptCounter:
    """A tiny Ray actor that counts the attempts at each file across worker restarts (Ray Data retries the tasks of
    a dead worker without limit; this is where the limit is kept)."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}

    def next_attempt(self, key: str) -> int:
        self.attempts[key] = self.attempts.get(key, 0) + 1
        return self.attempts[key]


def died_too_often(job: Job) -> JobRecord:
    return JobRecord(
        str(job.source),
        str(job.output),
        "failed",
        error=f"{job.source}: the Ray worker died on this file {MAX_RETRIES + 1} times (a crash or an out-of-memory "
        "kill); restore it alone, with a smaller --tile, to see why",
    )


class RestoreActor:
    """A Ray Data worker: loads the models once, then restores one batch of files per call."""

    def __init__(self, options: RestoreOptions, runtime: RuntimeSettings, outputs: JobOutputs, counter: Any) -> None:
        from oldphoto.restore.pipeline import Restorer
        from oldphoto.runtime import DEFAULT_TILE, DEFAULT_TILE_OVERLAP, make_runtime

        threads = runtime.threads or max(1, int(float(os.environ.get("OMP_NUM_THREADS", "1"))))
        placed = make_runtime(
            runtime.device,
            runtime.precision,
            runtime.tile or DEFAULT_TILE,
            runtime.tile_overlap or DEFAULT_TILE_OVERLAP,
            threads,
        )
        self.restorer = Restorer(placed, options)
        self.outputs = outputs
        self.counter = counter

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np
        import ray

        records = []
        for source, output, mask in zip(batch["source"], batch["output"], batch["mask"], strict=True):
            job = Job(Path(source), Path(output))
            if ray.get(self.counter.next_attempt.remote(str(job.source))) > MAX_RETRIES + 1:
                remove_partial_outputs([job])
                records.append(json.dumps(died_too_often(job).to_json()))
                continue
            _inject_fault(job.source)
            with _captured_warnings() as warnings:
                try:
                    record = restore_job(job, self.restorer, self.outputs, Path(mask) if mask else None).to_json()
                except DiskFullError as error:
                    record = {**JobRecord(str(job.source), str(job.output), "failed", error=str(error)).to_json(), STOP_FIELD: True}
            records.append(json.dumps({**record, WARNINGS_FIELD: warnings}))
        return {"record": np.array(records, dtype=object)}


class _MessageList(logging.Handler):
    """Keeps the messages of the warnings (and errors) it is given."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _captured_warnings() -> Iterator[list[str]]:
    """The messages of the warnings the library logs while in the block."""
    handler = _MessageList()
    logging.getLogger("oldphoto").addHandler(handler)
    try:
        yield handler.messages
    finally:
        logging.getLogger("oldphoto").removeHandler(handler)


def require_ray() -> None:
    """Check up front that Ray Data can be imported.

    Raises:
        EngineError: the ``ray`` extra is not installed.
    """
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineError("--engine ray needs Ray Data: pip install 'oldphoto[ray]'") from None


def run_with_ray(
    jobs: list[tuple[Job, Path | None]],
    options: RestoreOptions,
    runtime: RuntimeSettings,
    outputs: JobOutputs,
    settings: RaySettings,
) -> Iterator[JobRecord]:
    """Restore ``jobs`` (each with its user mask or None) on Ray; yields one record per job as workers finish them (a
    job whose workers died on it :data:`MAX_RETRIES` + 1 times is recorded as failed), then a ``failed`` record for
    any job whose Ray task failed all the same.

    Raises:
        EngineError: Ray is not installed or cannot start.
        DiskFullError: a worker found the output's file system full (the run stops; finished photos stay).
    """
    require_ray()
    import ray
    import ray.data

    if not jobs:
        return
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(
                address=settings.address,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=log.isEnabledFor(logging.DEBUG),
                runtime_env={"env_vars": {FAULT_ENV: os.environ[FAULT_ENV]}} if FAULT_ENV in os.environ else None,
            )
        except Exception as error:  # Ray raises ConnectionError, RuntimeError, ValueError... for a bad address
            raise EngineError(f"cannot start or reach Ray ({settings.address or 'local'}): {error}") from None
    try:
        yield from _run(ray, jobs, options, runtime, outputs, settings)
    finally:
        remove_partial_outputs(job for job, _ in jobs)
        if started_here:
            ray.shutdown()


def _run(ray: Any, jobs, options, runtime, outputs, settings) -> Iterator[JobRecord]:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # Ray Data restarts dead workers and retries their files without limit; RestoreActor stops at MAX_RETRIES. A
    # block that errors all the same is dropped and its file recorded as failed below, not the whole run failed.
    context.max_errored_blocks = -1
    counter = ray.remote(num_cpus=0)(AttemptCounter).remote()
    rows = [{"source": str(job.source), "output": str(job.output), "mask": str(mask) if mask else ""} for job, mask in jobs]
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        RestoreActor,
        fn_constructor_kwargs={"options": options, "runtime": runtime, "outputs": outputs, "counter": counter},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=settings.workers),
        num_cpus=settings.cpus_per_worker,
        num_gpus=settings.gpus_per_worker,
    )
    seen: set[str] = set()
    for row in dataset.iter_rows():
        data = json.loads(row["record"])
        stop = data.pop(STOP_FIELD, False)
        for message in data.pop(WARNINGS_FIELD, []):
            log.warning("%s", message)
        record = JobRecord.from_json(data)
        seen.add(record.input)
        if stop:
            raise DiskFullError(record.error or "no space left on the output's file system")
        yield record
    for job, _ in jobs:
        if str(job.source) not in seen:
            yield JobRecord(str(job.source), str(job.output), "failed", error=f"{job.source}: the Ray task for this file failed")
