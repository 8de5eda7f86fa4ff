"""Faults under a steady order load through the load balancer, with a switch and a rollback
in the middle of each scenario: no acknowledged order is lost or stored twice, nothing
answers 500 or hangs, and the system recovers on its own (see chaos_support for the form).

    .venv/bin/pytest tests/chaos                          # the short form (CI runs it)
    ECHOBASE_CHAOS=full .venv/bin/pytest tests/chaos -s   # the full form
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .chaos_support import (
    ANSWER_LIMIT_SECONDS,
    OUTAGE_SECONDS,
    OUTAGES,
    OUTCOMES,
    REPEATS,
    RESTARTS,
    Chaos,
)

pytestmark = [pytest.mark.timeout(1200), pytest.mark.slow]

Fault = Callable[[Chaos], float]
SCENARIOS: dict[str, tuple[Fault, int]] = {
    "SIGKILL a gateway worker": (Chaos.kill_gateway_worker, REPEATS),
    "SIGKILL the gateway": (Chaos.kill_gateway, REPEATS),
    "SIGKILL the processor": (Chaos.kill_processor, REPEATS),
    f"MariaDB down {OUTAGE_SECONDS:.0f} s": (
        lambda chaos: chaos.restart("mariadb", OUTAGE_SECONDS),
        OUTAGES,
    ),
    "restart the secrets store": (lambda chaos: chaos.restart("secrets"), RESTARTS),
    "restart nginx": (lambda chaos: chaos.restart("nginx"), RESTARTS),
}
# Only while nginx itself is down may a connection fail: nothing listens on the port.
ALLOWED_ERRORS = {"restart nginx": {"ConnectError"}}
ANSWERS = {200, 201, 503}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_no_acknowledged_order_is_lost_or_doubled(chaos: Chaos, scenario: str) -> None:
    fault, count = SCENARIOS[scenario]
    outcome, load = chaos.run(scenario, lambda: fault(chaos), count)
    OUTCOMES.append(outcome)
    samples = load.samples()

    assert outcome.accepted >= 50, "too little load to mean anything"
    assert outcome.lost == 0, f"{outcome.lost} acknowledged orders neither stored nor in a DLQ"
    assert outcome.duplicates == 0
    assert all(outcome.dead_lettered.values()), "a dead-lettered order without its reason"
    statuses = {s.status for s in samples if s.status is not None}
    assert statuses <= ANSWERS, f"unexpected answers: {statuses - ANSWERS}"
    errors = {s.error.split(":", 1)[0] for s in samples if s.error is not None}
    assert errors <= ALLOWED_ERRORS.get(scenario, set()), errors
    assert outcome.slowest_answer < ANSWER_LIMIT_SECONDS, "an answer hung"
    if scenario.startswith("MariaDB"):
        # Intake does not need the database: every order sent while it was down got a 201.
        during = [
            s
            for s in samples
            for begin, end in chaos.outages
            if s.method == "POST" and begin + 0.5 < s.started < end - 0.5
        ]
        assert len(during) >= 20, "too few orders sent during the outage"
        assert {s.status for s in during} == {201}, [s.status for s in during]
