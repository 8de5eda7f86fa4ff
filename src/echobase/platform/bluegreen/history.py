"""What happened to an environment: deploys, switches and rollbacks, one JSON line each."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Event:
    at: str
    who: str
    action: str  # deploy | switch | rollback | down | canary | promote | abort
    source: str  # the live colour before ("none" at first)
    target: str
    release: str | None
    result: str  # ok | failed | rolled back
    seconds: float
    detail: str = ""
    weights: dict[str, int] | None = None  # percent of users per colour afterwards


def record(
    directory: Path,
    action: str,
    source: str | None,
    target: str,
    release: str | None,
    result: str,
    seconds: float,
    detail: str = "",
    weights: dict[str, int] | None = None,
) -> Event:
    event = Event(
        at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        who=getpass.getuser(),
        action=action,
        source=source or "none",
        target=target,
        release=release,
        result=result,
        seconds=round(seconds, 2),
        detail=detail,
        weights=weights,
    )
    path = directory / "history.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(json.dumps(asdict(event)) + "\n")
    return event


def read(directory: Path, limit: int | None = 50) -> list[Event]:
    """The last ``limit`` events, oldest first; every event with ``limit=None``."""
    path = directory / "history.jsonl"
    if not path.is_file():
        return []
    events = []
    lines = path.read_text().splitlines()
    for line in lines if limit is None else lines[-limit:]:
        try:
            events.append(Event(**json.loads(line)))
        except (ValueError, TypeError):
            continue  # a torn last line from a crash is not history
    return events
