"""Exemplars across uvicorn workers, which prometheus_client's multiprocess mode drops.

prometheus_client keeps each worker's counts in mmapped ``*.db`` files that any worker merges
on a scrape, but it stores no exemplar there ("Exemplars are not supported" in its
multiprocess docs; client_python issue #826 is still open), so the OpenMetrics answer of a
multi-worker gateway carried none. Here each worker keeps the latest exemplar per histogram
bucket in memory and, at most once a second, replaces its own small JSON file in the same
directory (``exemplars_<pid>.json``: not ``*.db``, so prometheus_client never reads it);
whichever worker answers ``/metrics`` puts every live worker's exemplars back on the merged
samples. A file whose worker is gone (uvicorn respawns them) is removed on the next scrape.
"""

from __future__ import annotations

import glob
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path

from opentelemetry import trace
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
FILE_PREFIX = "exemplars_"
FILE_SUFFIX = ".json"
FLUSH_INTERVAL_SECONDS = 1.0

# A sample as the multiprocess merge names it: its name and its sorted labels.
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def trace_exemplar(span: trace.Span | None = None) -> dict[str, str] | None:
    """``{"trace_id": ...}`` of ``span`` (by default the current one) when it is sampled (an
    unsampled trace is never exported, so an exemplar pointing at it would lead nowhere)."""
    context = (span or trace.get_current_span()).get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return {"trace_id": f"{context.trace_id:032x}"}


def sample_key(name: str, labels: Mapping[str, str]) -> SampleKey:
    return name, tuple(sorted(labels.items()))


def bucket_le(buckets: Sequence[float], value: float) -> str:
    """The ``le`` label of the bucket an observation falls in, spelt as prometheus_client
    spells it in the merged samples."""
    for bound in sorted(buckets):
        if value <= bound:
            return str(floatToGoString(bound))
    return str(floatToGoString(math.inf))


def bucket_sample(
    histogram: str, labels: Mapping[str, str], buckets: Sequence[float], value: float
) -> SampleKey:
    return sample_key(f"{histogram}_bucket", {**labels, "le": bucket_le(buckets, value)})


def render_file(exemplars: Mapping[SampleKey, Exemplar]) -> str:
    rows = [
        {
            "sample": name,
            "labels": dict(labels),
            "exemplar": dict(exemplar.labels),
            "value": exemplar.value,
            "timestamp": exemplar.timestamp,
        }
        for (name, labels), exemplar in exemplars.items()
    ]
    return json.dumps(rows)


def parse_file(text: str) -> dict[SampleKey, Exemplar]:
    """Inverse of :func:`render_file`; what cannot be read is no exemplar, never an error."""
    try:
        rows = json.loads(text)
    except ValueError:
        return {}
    found: dict[SampleKey, Exemplar] = {}
    for row in rows if isinstance(rows, list) else []:
        try:
            key = sample_key(str(row["sample"]), {str(k): str(v) for k, v in row["labels"].items()})
            labels = {str(k): str(v) for k, v in row["exemplar"].items()}
            found[key] = Exemplar(labels, float(row["value"]), float(row["timestamp"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return found


def newest(*sources: Mapping[SampleKey, Exemplar]) -> dict[SampleKey, Exemplar]:
    """One exemplar per sample: the most recent of any worker's."""
    merged: dict[SampleKey, Exemplar] = {}
    for source in sources:
        for key, exemplar in source.items():
            current = merged.get(key)
            if current is None or float(exemplar.timestamp or 0) > float(current.timestamp or 0):
                merged[key] = exemplar
    return merged


def attach(metrics: Iterable[Metric], exemplars: Mapping[SampleKey, Exemplar]) -> list[Metric]:
    """The merged metrics with each sample's exemplar put back in place."""
    out = list(metrics)
    if not exemplars:
        return out
    for metric in out:
        metric.samples = [
            sample._replace(exemplar=exemplars.get(sample_key(sample.name, sample.labels)))
            if sample.exemplar is None
            else sample
            for sample in metric.samples
        ]
    return out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process holds that pid now: not one of our workers
    return True


def _file_pid(path: str) -> int | None:
    stem = os.path.basename(path)[len(FILE_PREFIX) : -len(FILE_SUFFIX)]
    return int(stem) if stem.isdigit() else None


def read_workers(
    directory: str | Path, alive: Callable[[int], bool] = pid_alive
) -> dict[SampleKey, Exemplar]:
    """Every live worker's exemplars; the files of workers that are gone are removed."""
    sources = []
    for path in glob.glob(os.path.join(directory, f"{FILE_PREFIX}*{FILE_SUFFIX}")):
        pid = _file_pid(path)
        if pid is None:
            continue
        if not alive(pid):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            continue
        try:
            sources.append(parse_file(Path(path).read_text()))
        except OSError:
            continue  # replaced or removed meanwhile
    return newest(*sources)


class ExemplarMultiProcessCollector:
    """prometheus_client's multiprocess merge, with the workers' exemplars on its samples."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = str(directory)

    def collect(self) -> list[Metric]:
        files = glob.glob(os.path.join(self.directory, "*.db"))
        metrics = MultiProcessCollector.merge(files, accumulate=True)
        return attach(metrics, read_workers(self.directory))


class WorkerExemplars:
    """This worker's latest exemplar per sample, written to its own file by a background
    thread at most once per ``interval`` (never on the request path)."""

    def __init__(
        self,
        directory: str | Path,
        interval: float = FLUSH_INTERVAL_SECONDS,
        pid: Callable[[], int] = os.getpid,
    ) -> None:
        self.directory = Path(directory)
        self.interval = interval
        self._pid = pid
        self._latest: dict[SampleKey, Exemplar] = {}
        self._dirty = False
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._flusher_pid: int | None = None

    @property
    def path(self) -> Path:
        return self.directory / f"{FILE_PREFIX}{self._pid()}{FILE_SUFFIX}"

    def record(self, key: SampleKey, exemplar: Mapping[str, str], value: float) -> None:
        """``exemplar`` (its labels, e.g. the trace id) for the observation ``value``."""
        with self._lock:
            self._latest[key] = Exemplar(dict(exemplar), value, time.time())
            self._dirty = True
        self._ensure_flusher()

    def flush(self) -> None:
        """Write the file if anything changed since the last write (atomic replace)."""
        with self._lock:
            if not self._dirty:
                return
            text = render_file(self._latest)
            self._dirty = False
        path = self.path
        partial = path.with_name(f".{path.name}.partial")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.replace(partial, path)
        except OSError:
            with self._lock:
                self._dirty = True  # try again next time: exemplars are a nicety, not data

    def _ensure_flusher(self) -> None:
        pid = self._pid()
        if self._flusher_pid == pid and self._flusher is not None:
            return
        with self._lock:
            if self._flusher_pid == pid and self._flusher is not None:
                return
            if self._flusher_pid is not None:
                self._latest.clear()  # forked: the parent's exemplars are the parent's
            self._flusher_pid = pid
            self._flusher = threading.Thread(
                target=self._flush_forever, name="exemplar-flush", daemon=True
            )
            self._flusher.start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()


@cache
def worker_exemplars() -> WorkerExemplars | None:
    """This worker's store in multiprocess mode; None in a single process, where
    prometheus_client keeps exemplars itself."""
    directory = os.environ.get(MULTIPROC_DIR)
    return WorkerExemplars(directory) if directory else None
