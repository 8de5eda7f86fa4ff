"""One function gives a gateway or processor the platform's settings: the colour plan (what
supervisor runs) and the development stack (what the tests and `echobase dev` run) agree on
every name, and on every value they share."""

from __future__ import annotations

from pathlib import Path

from echobase.platform.devstack import free_stack, service_env
from echobase.platform.render.ephemeral import ColourPlan
from echobase.platform.render.settings import platform_settings
from echobase.platform.stack import RESERVED_SETTINGS, Stack, resolve_ports


def test_the_colour_plan_and_the_dev_stack_name_the_same_settings() -> None:
    plan = ColourPlan(Stack(Path("/h"), resolve_ports()), "blue", "devlocal", Path("/py"), "r1")
    gateway = plan.service_env("api-gateway")
    dev = service_env(
        aws_url=plan.durable.secrets_url,
        queue=plan.queues,
        port=plan.service("api-gateway").port,
        colour="blue",
    )
    shared = set(
        platform_settings(colour="c", port=1, secrets_url="s", sqs_url="q", queues=plan.queues)
    )
    assert shared <= set(dev) and shared <= set(gateway)
    # One emulator serves a dev stack's secrets and queues; a colour has a queue server.
    for key in shared - {"ECHOBASE_SQS_ENDPOINT_URL"}:
        assert dev[key] == gateway[key], key
    # Every setting the platform sets is one echobase.toml may not override.
    full = platform_settings(
        colour="c",
        port=1,
        secrets_url="s",
        sqs_url="q",
        queues=plan.queues,
        host="h",
        release="r",
        environment="e",
        traces_dir="/t",
    )
    assert set(full) <= RESERVED_SETTINGS


def test_a_dev_stack_takes_its_ports_from_the_one_port_table(tmp_path: Path) -> None:
    stack = free_stack(tmp_path)
    ports = [port for _, _, port in stack.ports.all()]
    assert len(set(ports)) == len(ports)
    assert stack.durable_service("devlocal", "mariadb").port in ports
