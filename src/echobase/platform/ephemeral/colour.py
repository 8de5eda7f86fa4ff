"""Carrying out a colour: start it for a release, report its health and queue, drain it
and stop it. The live colour is never touched from here: callers decide which colour."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echobase.app.queues import ensure_queues
from echobase.platform import frontend
from echobase.platform.durable import prometheus
from echobase.platform.durable.credentials import aws_client
from echobase.platform.render.ephemeral import ColourPlan
from echobase.platform.render.release import colour_release_file
from echobase.platform.runtime.files import private_dir, write_private
from echobase.platform.runtime.orphans import Orphan, group_members, stop_orphan
from echobase.platform.runtime.services import (
    LIVE_STATES,
    ServiceRunner,
    http_answers,
    supervisor_for,
)
from echobase.platform.stack import Service, Stack, check_colour

Progress = Callable[[str], None]
# The queues' visibility timeout (30 s) and a margin.
IN_FLIGHT_GRACE_SECONDS = 40.0
# A colour's programs' stopwaitsecs (plan.program).
ORPHAN_STOP_SECONDS = 40.0


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class ServiceHealth:
    name: str
    role: str
    state: str
    pid: int | None
    port: int
    healthy: bool
    detail: str = ""  # what is wrong, when it is not healthy


def probe_health(url: str) -> tuple[bool, str]:
    """Ask a service's /health: healthy or not, and in a few words what its answer says is
    wrong (the failing checks), so that status and refusals can name the cause."""
    try:
        # Past the gateway's own 3 s budget for probing its dependencies.
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
            return response.status == 200, ""
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            body = {}
        return False, _what_is_wrong(body) or f"/health answered {exc.code}"
    except OSError as exc:
        return False, f"/health not answering ({type(exc).__name__})"


def _what_is_wrong(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    checks = body.get("checks")
    if isinstance(checks, dict):  # the gateway's dependency checks
        return "; ".join(
            str(check.get("message", name))
            for name, check in checks.items()
            if isinstance(check, dict) and check.get("status") != "healthy"
        )
    problems = []  # the processor's own account
    if body.get("queueError"):
        problems.append(f"queue unreachable ({body['queueError']})")
    if body.get("databaseAvailable") is False:
        problems.append("database unavailable")
    return "; ".join(problems)


@dataclass(frozen=True)
class DrainReport:
    waited_seconds: float
    drained: int  # stored by the colour's own processor while draining
    moved: int  # handed to the live colour's queue after the timeout


class ColourRuntime:
    def __init__(
        self,
        stack: Stack,
        colour: str,
        progress: Progress = _quiet,
        orphans: Sequence[Orphan] = (),
    ) -> None:
        self.stack = stack
        self.colour = check_colour(colour)
        self.progress = progress
        self.supervisor = supervisor_for(stack.home)
        self.runner = ServiceRunner(self.supervisor)
        # Left by a dead supervisord: drained and stopped by pid like supervised ones.
        self.orphans = list(orphans)

    # --- what the colour is attached to -------------------------------------------------

    @property
    def home(self) -> Path:
        return self.stack.ephemeral_dir(self.colour)

    def _marker(self, name: str) -> str | None:
        path = self.home / name
        return path.read_text().strip() or None if path.is_file() else None

    def attached_env(self) -> str | None:
        return self._marker("env")

    def release_id(self) -> str | None:
        return self._marker(colour_release_file(self.home).name)

    @property
    def names(self) -> list[str]:
        return [service.name for service in self.stack.colour_services(self.colour)]

    def is_running(self) -> bool:
        if not self.supervisor.running():
            return False
        return any(self.runner.is_running(name) for name in self.names)

    # --- start ------------------------------------------------------------------------

    def start(self, plan: ColourPlan, timeout: float = 60) -> None:
        """Start every service of the plan and wait for each health check in turn."""
        private_dir(plan.home)
        write_private(plan.home / "env", plan.env + "\n")
        write_private(colour_release_file(plan.home), plan.release_id + "\n")
        # Only this colour's direct port and (once switched) production read the link.
        frontend.publish(self.stack.home, self.colour, plan.bundle)
        self.progress(f"{self.colour}: starting its queue server")
        self.runner.run(plan.program("sqs"), lambda: http_answers(plan.health_url("sqs")))
        urls = ensure_queues(self.sqs(plan))
        if urls != plan.queues:
            raise RuntimeError(f"queue URLs {urls} differ from the planned {plan.queues}")
        shutil.rmtree(plan.metrics_dir, ignore_errors=True)  # stale worker files mislead
        private_dir(plan.metrics_dir)
        for role in ("order-processor", "api-gateway"):
            self.progress(f"{self.colour}: starting {role} ({plan.release_id})")
            url = plan.health_url(role)
            self.runner.run(plan.program(role), lambda u=url: http_answers(u, ok=200), timeout)
        self.runner.wait_running([program.name for program in plan.programs()])
        prometheus.write_targets(plan.durable.prometheus, self.colour, plan.scrape_targets())

    def sqs(self, plan: ColourPlan) -> Any:
        return aws_client("sqs", plan.sqs_url)

    # --- health ---------------------------------------------------------------------

    def health(self, plan: ColourPlan) -> list[ServiceHealth]:
        up = self.supervisor.running()
        report = []
        for service in plan.services:
            info = self.supervisor.info(service.name) if up else None
            state = info.state if info else "ABSENT"
            healthy, detail = False, ""
            if state in ("FATAL", "BACKOFF", "EXITED"):
                detail = self._last_words(service.name)  # why it would not start
            elif state not in LIVE_STATES:
                pass  # stopped or absent: the state says it
            elif service.role == "sqs":
                healthy = http_answers(plan.health_url("sqs"))
                detail = "" if healthy else f"not answering on port {service.port}"
            else:
                healthy, detail = probe_health(plan.health_url(service.role))
            pid = info.pid if info and info.pid else None
            report.append(
                ServiceHealth(service.name, service.role, state, pid, service.port, healthy, detail)
            )
        if plan.bundle is not None:
            report.append(self._app_health(plan, plan.bundle))
        return report

    def _last_words(self, name: str) -> str:
        """The last line the program wrote (a refusal to start names its cause there)."""
        lines = [line for line in self.supervisor.tail(name, 2000).splitlines() if line.strip()]
        return lines[-1].strip()[:300] if lines else ""

    def _app_health(self, plan: ColourPlan, bundle: Path) -> ServiceHealth:
        """The colour's browser app: no process of its own, nginx serves the release's
        files through the colour's web link, so it is healthy when the link points at this
        release's bundle and the direct port serves its page."""
        published = frontend.published(self.stack.home, self.colour) == bundle.resolve()
        port = self.stack.ports.of(plan.env)[f"lb_{self.colour}"]
        healthy = published and http_answers(f"{plan.direct_url}/", ok=200)
        state = "PUBLISHED" if published else "ABSENT"
        # Named as the stack names a colour's services, though nothing supervises it.
        name = Service("ephemeral", self.colour, "frontend", port).name
        return ServiceHealth(name, "frontend", state, None, port, healthy)

    def queue_depth(self, plan: ColourPlan) -> int | None:
        """Messages waiting or being processed; None when the queue server is down."""
        if not http_answers(plan.health_url("sqs")):
            return None
        try:
            attributes = self.sqs(plan).get_queue_attributes(
                QueueUrl=plan.queues.queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
        except Exception:
            return 0
        return sum(int(value) for value in attributes.values())

    # --- drain and stop ---------------------------------------------------------------

    def drain_and_stop(
        self,
        plan: ColourPlan,
        overflow: ColourPlan | None,
        timeout: float = 30,
    ) -> DrainReport:
        """Stop taking orders, let the processor empty the queue, move what is left after
        ``timeout`` to ``overflow`` (the live colour), then stop everything. Nothing dropped."""
        started = time.monotonic()
        gateway, processor, sqs = (
            plan.service(r).name for r in ("api-gateway", "order-processor", "sqs")
        )
        self.progress(f"{self.colour}: stopping its gateway")
        self._stop(gateway)
        before = self.queue_depth(plan) or 0
        remaining = before
        if before and self._running(processor):
            self.progress(f"{self.colour}: draining {before} queued order(s)")
            deadline = started + timeout
            while time.monotonic() < deadline:
                remaining = self.queue_depth(plan) or 0
                if remaining == 0:
                    break
                time.sleep(0.2)
        self._stop(processor)  # it finishes (or releases) the batch in hand
        moved = 0
        remaining = self.queue_depth(plan) or 0
        if remaining and overflow is None:
            raise RuntimeError(
                f"{remaining} order(s) still queued in {self.colour} and no live colour to take "
                "them; its queue server is left running"
            )
        # Messages a cancelled long poll took stay invisible for the visibility timeout:
        # keep moving until the queue is empty, never stop the queue server with any left.
        deadline = time.monotonic() + IN_FLIGHT_GRACE_SECONDS
        while remaining and overflow is not None:
            self.progress(f"{self.colour}: moving {remaining} order(s) to {overflow.colour}")
            moved += move_messages(self.sqs(plan), plan.queues.queue_url, overflow)
            moved += move_messages(self.sqs(plan), plan.queues.dlq_url, overflow, dlq=True)
            remaining = self.queue_depth(plan) or 0
            if remaining and time.monotonic() > deadline:
                raise RuntimeError(
                    f"{remaining} order(s) stayed in flight in {self.colour}; its queue server "
                    "is left running so nothing is lost"
                )
            if remaining:
                time.sleep(0.5)
        self._stop(sqs)
        prometheus.remove_targets(plan.durable.prometheus, self.colour)
        for marker in ("env", "release"):
            (plan.home / marker).unlink(missing_ok=True)
        return DrainReport(time.monotonic() - started, max(before - remaining, 0), moved)

    def _running(self, name: str) -> bool:
        return self.runner.is_running(name) or any(
            orphan.program == name and group_members(orphan.pgid) for orphan in self.orphans
        )

    def _stop(self, name: str) -> None:
        if self.supervisor.running() and self.supervisor.info(name) is not None:
            self.supervisor.stop(name)
        for orphan in [o for o in self.orphans if o.program == name]:
            # As supervisord would: SIGTERM to the group (the gateway drains its requests,
            # the processor finishes its batch), SIGKILL after the program's stopwaitsecs.
            stop_orphan(orphan, "TERM", ORPHAN_STOP_SECONDS)
            self.orphans.remove(orphan)


def move_messages(sqs: Any, source_url: str, target: ColourPlan, dlq: bool = False) -> int:
    """Receive, send to the target, then delete: a crash between the two leaves a
    duplicate, never a loss (the processor's upsert on order_uid absorbs duplicates)."""
    destination = target.queues.dlq_url if dlq else target.queues.queue_url
    target_sqs = aws_client("sqs", target.sqs_url)
    moved, idle = 0, 0
    while idle < 3:
        batch = sqs.receive_message(
            QueueUrl=source_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=30,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            idle += 1
            time.sleep(0.1)
            continue
        idle = 0
        entries = [
            {
                "Id": str(index),
                "MessageBody": message["Body"],
                **(
                    {"MessageAttributes": message["MessageAttributes"]}
                    if message.get("MessageAttributes")
                    else {}
                ),
            }
            for index, message in enumerate(batch)
        ]
        sent = target_sqs.send_message_batch(QueueUrl=destination, Entries=entries)
        if sent.get("Failed"):
            raise RuntimeError(f"the live queue refused {len(sent['Failed'])} moved message(s)")
        sqs.delete_message_batch(
            QueueUrl=source_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
        moved += len(batch)
    return moved
