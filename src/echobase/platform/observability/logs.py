"""Every program's log, merged in time order: which files (``stack.logs_dir/<program>.log``
and supervisor's backups ``.log.1`` .. ``.log.N``, older = higher), how their lines become
records, which records a reader asked for, and following the files as they grow."""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from echobase.platform.observability.filters import level_rank
from echobase.platform.observability.log_lines import ParsedLine, parse_line
from echobase.platform.stack import COLOURS, Stack


class UnknownService(ValueError):
    """A SERVICE that is neither a role nor a program of the environment."""


@dataclass(frozen=True)
class LogSource:
    program: str
    role: str
    owner: str  # the environment for durable programs, else the colour
    colour: str | None
    path: Path  # the current file; supervisor's backups sit beside it

    def rotated(self) -> list[Path]:
        """Backups, oldest (highest number) first."""
        pattern = re.compile(re.escape(self.path.name) + r"\.(\d+)")
        try:
            names = os.listdir(self.path.parent)
        except OSError:
            return []
        numbered = [(int(m.group(1)), name) for name in names if (m := pattern.fullmatch(name))]
        return [self.path.parent / name for _, name in sorted(numbered, reverse=True)]


def log_sources(stack: Stack, env: str) -> list[LogSource]:
    """The environment's durable programs, then both colours'."""
    sources = [
        LogSource(s.name, s.role, env, None, stack.logs_dir / f"{s.name}.log")
        for s in stack.durable_services(env)
    ]
    for colour in COLOURS:
        sources += [
            LogSource(s.name, s.role, colour, colour, stack.logs_dir / f"{s.name}.log")
            for s in stack.colour_services(colour)
        ]
    return sources


def select_sources(
    sources: list[LogSource], names: Iterable[str], colour: str | None = None
) -> list[LogSource]:
    """Those named by role or program name (all when none is named), of ``colour`` if given."""
    names = list(names)
    roles = {source.role for source in sources}
    programs = {source.program for source in sources}
    unknown = [name for name in names if name not in roles | programs]
    if unknown:
        raise UnknownService(
            f"unknown service {', '.join(map(repr, unknown))}: known are the roles "
            f"{', '.join(sorted(roles))} and the programs {', '.join(sorted(programs))}"
        )
    chosen = [s for s in sources if not names or s.role in names or s.program in names]
    if colour is not None:
        chosen = [s for s in chosen if s.colour == colour]
    return chosen


@dataclass(frozen=True)
class LogRecord:
    time: datetime  # aware, UTC; a line without its own time has its predecessor's
    program: str
    service: str
    colour: str  # the colour, or the environment for a durable program
    level: str | None
    message: str
    text: str
    fields: dict[str, Any] | None  # a JSON line's own fields
    trace_id: str | None = None
    correlation_id: str | None = None
    continued: bool = False  # part of the line before (a traceback line)
    time_inferred: bool = False


def _text_field(fields: dict[str, Any] | None, key: str) -> str | None:
    value = (fields or {}).get(key)
    return value if isinstance(value, str) and value else None


class Assembler:
    """Lines of one program, in order, into records. A line without a time takes the one of
    the record before it; lines before any timed one wait for the next timed line.

    Given ``only_trace``, only records carrying that trace or correlation id can be wanted:
    a line that does not contain it is not even parsed, unless it may continue a record that
    carries it (the cost of ``logs --trace`` is then a substring test per line)."""

    def __init__(self, source: LogSource, only_trace: str | None = None) -> None:
        self.source = source
        self.last: LogRecord | None = None
        self.waiting: list[ParsedLine] = []
        self.only_trace = only_trace
        self._last_carries = False
        # Set when reading starts mid-file: untimed lines before the first timed one are
        # the tail of a record that was not read.
        self.skip_untimed = False

    def feed(self, raw: str) -> list[LogRecord]:
        if self.only_trace is not None:
            if self.only_trace not in raw and not self._last_carries:
                return []
            records = self._feed(raw)
            if self.last is not None:
                ids = (self.last.trace_id, self.last.correlation_id)
                self._last_carries = self.only_trace in ids
            return records
        return self._feed(raw)

    def _feed(self, raw: str) -> list[LogRecord]:
        parsed = parse_line(raw)
        if self.skip_untimed:
            if parsed.time is None:
                return []
            self.skip_untimed = False
        if parsed.time is not None:
            out = [self._record(line, parsed.time, True) for line in self._take_waiting()]
            self.last = self._record(parsed, parsed.time, False)
            return [*out, self.last]
        if self.last is None:
            self.waiting.append(parsed)
            return []
        record = self._record(parsed, self.last.time, True)
        if not record.continued:
            self.last = record
        return [record]

    def flush(self, when: datetime) -> list[LogRecord]:
        """Lines still waiting for a time (the program printed none yet) get ``when``."""
        out = [self._record(line, when, True) for line in self._take_waiting()]
        if out:
            self.last = out[-1]
        return out

    def _take_waiting(self) -> list[ParsedLine]:
        waiting, self.waiting = self.waiting, []
        return waiting

    def _record(self, line: ParsedLine, when: datetime, inferred: bool) -> LogRecord:
        source, before = self.source, self.last
        if line.continues and before is not None:
            # A traceback line belongs to the record it follows: same service, level, ids.
            return LogRecord(
                when,
                source.program,
                before.service,
                before.colour,
                before.level,
                line.message,
                line.text,
                None,
                before.trace_id,
                before.correlation_id,
                continued=True,
                time_inferred=True,
            )
        colour = _text_field(line.fields, "colour")
        return LogRecord(
            when,
            source.program,
            _text_field(line.fields, "service") or source.role,
            colour if colour and colour != "none" else (source.colour or source.owner),
            line.level,
            line.message,
            line.text,
            line.fields,
            _text_field(line.fields, "trace_id"),
            _text_field(line.fields, "correlation_id"),
            time_inferred=inferred,
        )


# A bisection stops within this many bytes; the lines read from there are filtered anyway.
_BISECT_SLACK = 64 * 1024


def _first_time(handle: BinaryIO, limit: int) -> datetime | None:
    """The time of the first timed whole line from the handle's position, before ``limit``."""
    handle.readline()  # the rest of the line the position fell into
    while handle.tell() < limit:
        line = handle.readline()
        if not line:
            return None
        parsed = parse_line(line.decode("utf-8", "replace"))
        if parsed.time is not None:
            return parsed.time
    return None


def seek_to_time(handle: BinaryIO, since: datetime) -> None:
    """Near the first line at or after ``since``, found by bisection: a program's file is
    in time order, and reading 10 MB of lines only to drop them is what makes
    ``--since`` slow. Lands on the start of a line, at most about _BISECT_SLACK early."""
    size = os.fstat(handle.fileno()).st_size
    low, high = 0, size
    while high - low > _BISECT_SLACK:
        middle = (low + high) // 2
        handle.seek(middle)
        found = _first_time(handle, high)
        if found is None or found >= since:
            high = middle
        else:
            low = middle
    handle.seek(low)
    if low:
        handle.readline()


def _mtime(path: Path) -> datetime:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return datetime.now(UTC)


class ProgramLog:
    """One program's files: read what is there (``backlog``), then what is appended
    (``poll``). The current file stays open, so lines written just before supervisor
    rotates it are still read from the renamed file; then the new file is opened."""

    def __init__(self, source: LogSource, only_trace: str | None = None) -> None:
        self.source = source
        self.assembler = Assembler(source, only_trace)
        self.handle: BinaryIO | None = None
        self.partial = b""

    def backlog(self, since: datetime | None = None, follow: bool = False) -> Iterator[LogRecord]:
        """Records in the files now, oldest file first. Files last written before ``since``
        are skipped, and the others entered near it. With ``follow`` the current file is
        kept open, and a last line still being written waits for its end."""
        for path in self.source.rotated():
            if since is not None and _mtime(path) < since:
                continue
            try:
                with path.open("rb") as stream:
                    yield from self._read(stream, since=since)
            except OSError:
                continue
        try:
            handle = self.source.path.open("rb")
        except OSError:
            handle = None
        if handle is not None:
            yield from self._read(handle, keep_partial=follow, since=since)
            if follow:
                self.handle = handle
            else:
                handle.close()
        if not follow:
            yield from self.assembler.flush(_mtime(self.source.path))

    def _read(
        self, handle: BinaryIO, keep_partial: bool = False, since: datetime | None = None
    ) -> Iterator[LogRecord]:
        if since is not None:
            seek_to_time(handle, since)
            if handle.tell():
                # Entered mid-file: lines before the first timed one belong to a record
                # from before ``since``, already left out.
                self.assembler.last, self.assembler.waiting = None, []
                self.assembler.skip_untimed = True
        for line in iter(handle.readline, b""):
            if not line.endswith(b"\n") and keep_partial:
                self.partial += line
                return
            line, self.partial = self.partial + line, b""
            yield from self.assembler.feed(line.decode("utf-8", "replace"))

    def poll(self, now: datetime | None = None) -> list[LogRecord]:
        """What was appended since the last call; survives rotation and truncation."""
        out: list[LogRecord] = []
        if self.handle is None:
            try:
                self.handle = self.source.path.open("rb")
            except OSError:
                return out
        out += self._read(self.handle, keep_partial=True)
        try:
            current = os.stat(self.source.path)
        except OSError:
            current = None  # between supervisor's rename and its new file
        if current is not None:
            opened = os.fstat(self.handle.fileno())
            if (current.st_ino, current.st_dev) != (opened.st_ino, opened.st_dev):
                self.handle.close()  # rotated: the old file was read to its end above
                self.handle = None
                self.partial = b""
                out += self.poll(now)
            elif current.st_size < self.handle.tell():
                self.handle.seek(0)  # truncated in place
                self.partial = b""
                out += self._read(self.handle, keep_partial=True)
        out += self.assembler.flush(now or datetime.now(UTC))
        return out

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


@dataclass(frozen=True)
class LogFilter:
    """Which records a reader asked for. A line that names no level counts as info."""

    since: datetime | None = None
    min_level: str | None = None
    trace: str | None = None

    def keep(self, record: LogRecord) -> bool:
        if self.since is not None and record.time < self.since:
            return False
        if self.min_level is not None:
            if level_rank(record.level or "info") < level_rank(self.min_level):
                return False
        if self.trace is not None:
            return self.trace in (record.trace_id, record.correlation_id)
        return True


@dataclass
class MergedLogs:
    """The selected programs' logs as one stream in time order (a k-way merge of each
    program's files, which are each in order), then, to follow, what they append."""

    sources: list[LogSource]
    keep: LogFilter = field(default_factory=LogFilter)
    logs: list[ProgramLog] = field(init=False)

    def __post_init__(self) -> None:
        self.logs = [ProgramLog(source, self.keep.trace) for source in self.sources]

    def backlog(self, follow: bool = False) -> Iterator[LogRecord]:
        streams = [log.backlog(self.keep.since, follow) for log in self.logs]
        for record in heapq.merge(*streams, key=lambda r: r.time):
            if self.keep.keep(record):
                yield record

    def poll(self) -> list[LogRecord]:
        now = datetime.now(UTC)
        fresh = [record for log in self.logs for record in log.poll(now)]
        fresh.sort(key=lambda r: r.time)  # stable: each program's own order is kept
        return [record for record in fresh if self.keep.keep(record)]

    def follow(
        self,
        emit: Callable[[LogRecord], None],
        stopped: Callable[[float], bool],
        interval: float = 0.25,
    ) -> None:
        """The backlog, then new records every ``interval`` until ``stopped(interval)``
        (which waits, e.g. ``threading.Event.wait``) says to stop."""
        try:
            for record in self.backlog(follow=True):
                if stopped(0):
                    return
                emit(record)
            while not stopped(interval):
                for record in self.poll():
                    emit(record)
        finally:
            self.close()

    def close(self) -> None:
        for log in self.logs:
            log.close()
