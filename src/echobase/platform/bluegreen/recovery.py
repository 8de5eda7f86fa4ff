"""Back under supervision after supervisord died: what ``echobase up`` does first.

A SIGKILLed (or OOM-killed) supervisord leaves every program running, reparented to init:
traffic keeps flowing, but nothing restarts a crash, switches cannot signal nginx, and a new
supervisord's programs could not bind the ports the orphans hold. Recovery starts a new
supervisord (its programs are defined but not started: autostart is off) and replaces each
orphan, found by pid (runtime.orphans), with the same program under it, in the order that
costs the least:

1. the durable layer, in setup's order: the secrets store, MariaDB (a clean shutdown; the
   colours ride it out as they ride out any database restart), nginx (its launcher retires
   the old master once the new one is about to bind, so the port is closed only for that
   moment), Prometheus;
2. the idle colour: its gateway stops, its orphaned processor empties the queue and finishes
   its batch, what is still queued moves to the live colour's queue (the queue servers keep
   messages in memory), then it starts again with the release it ran;
3. the live colour the same way, with production switched to the idle colour meanwhile when
   that one runs healthy (two switches, no refused request); otherwise in place, and the
   live colour answers 503 until its gateway is back.

No acknowledged order is dropped: the queue servers are stopped only once empty.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from echobase.platform.bluegreen.lock import deploy_lock
from echobase.platform.bluegreen.pipeline import BlueGreen, Outcome
from echobase.platform.durable.layer import DurableLayer, unsupervised
from echobase.platform.ephemeral.colour import ColourRuntime
from echobase.platform.render.ephemeral import other_colour
from echobase.platform.runtime.orphans import Orphan, stop_orphan
from echobase.platform.stack import COLOURS

# nginx's old workers may still be finishing requests after the new master took the ports.
LEFTOVER_SECONDS = 40.0


class RecoveryError(RuntimeError):
    """Something stayed unsupervised; the message names it."""


@dataclass(frozen=True)
class RecoveryReport:
    replaced: tuple[str, ...]  # program names, in the order they were replaced
    switched_away: bool  # production went to the idle colour while the live one restarted
    seconds: float


def recover(bluegreen: BlueGreen) -> RecoveryReport | None:
    """Put every unsupervised program of the state directory back under supervisord;
    None when there was nothing to do."""
    stack = bluegreen.stack
    orphans = unsupervised(stack)
    if not orphans:
        return None
    started = time.monotonic()
    progress = bluegreen.progress
    progress(
        f"supervisord is gone: {len({o.program for o in orphans})} program(s) run "
        "unsupervised; starting a new supervisord"
    )
    bluegreen.durable.supervisor.ensure_running(timeout=30)
    replaced: list[str] = []
    switched_away = False
    with deploy_lock(bluegreen.durable.plan.home, 60):
        for env in stack.ports.durable:
            layer = bluegreen.durable if env == bluegreen.env else DurableLayer(stack, env)
            for service in layer.plan.services:
                mine = [o for o in orphans if o.program == service.name]
                if not mine:
                    continue
                progress(f"replacing {service.name} (pids {_pids(mine)})")
                program = layer.plan.program(service.role)
                if service.role != "nginx":
                    # nginx is left to its launcher: it retires the old group only when the
                    # new master is about to bind, so the port is closed for the least time.
                    for orphan in mine:
                        stop_orphan(orphan, program.stopsignal, program.stopwaitsecs)
                layer.start_service(service.role)
                replaced.append(service.name)

        live = bluegreen.live()
        # The idle colour first: it takes no production traffic, and once it runs supervised
        # and healthy it can carry production while the live one is replaced.
        for colour in sorted(COLOURS, key=lambda c: c == live):
            names = {service.name for service in stack.colour_services(colour)}
            mine = [o for o in orphans if o.program in names]
            if not mine:
                continue
            progress(f"replacing {colour} (pids {_pids(mine)})")
            other = other_colour(colour)
            away = colour == live and bluegreen.healthy(other)
            if away:
                bluegreen._switch(other, "recover")
                switched_away = True
            plan = bluegreen.running_plan(colour)
            overflow = bluegreen.running_plan(other) if bluegreen.healthy(other) else None
            runtime = ColourRuntime(stack, colour, progress, orphans=mine)
            if plan is None:
                # No release recorded: nothing to restart it with, and no queue URLs to
                # drain by; stop it as a deploy stops a colour it knows nothing about.
                for role in ("api-gateway", "order-processor", "sqs"):
                    runtime._stop(stack.colour_service(colour, role).name)
            else:
                runtime.drain_and_stop(plan, overflow)
                runtime.start(plan)
            replaced += sorted(names & {o.program for o in mine})
            if away:
                bluegreen._switch(colour, "recover")

        deadline = time.monotonic() + LEFTOVER_SECONDS
        while left := unsupervised(stack):
            if time.monotonic() > deadline:
                raise RecoveryError(
                    "still unsupervised after recovery: "
                    + ", ".join(f"{o.program} (pids {list(o.pids)})" for o in left)
                )
            time.sleep(0.1)
        report = RecoveryReport(tuple(replaced), switched_away, time.monotonic() - started)
        live_now = bluegreen.live() or "none"
        bluegreen._record(
            Outcome(
                "recover",
                live_now,
                live_now,
                None,
                seconds=report.seconds,
                detail=f"{len(replaced)} program(s) back under supervisord",
            )
        )
    return report


def _pids(orphans: list[Orphan]) -> str:
    return ", ".join(str(pid) for orphan in orphans for pid in orphan.pids)


def resume_colours(bluegreen: BlueGreen) -> list[str]:
    """Start again each colour whose deploy is still on record (``down`` removes the record)
    but that does not run healthy: after a reboot or a power cut every process is gone while
    the record, nginx's live colour and the queue servers' data are not. Without this, ``up``
    would deploy to the idle colour and leave the live one's queued orders unprocessed."""
    resumed = []
    for colour in COLOURS:
        plan = bluegreen.running_plan(colour)
        if plan is None or bluegreen.healthy(colour):
            continue
        bluegreen.progress(f"resuming {colour} ({plan.release_id})")
        bluegreen.colour(colour).start(plan)
        resumed.append(colour)
    return resumed
