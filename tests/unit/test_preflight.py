"""The port preflight's pure parts: which ports a command needs, which are echobase's own,
how each is judged (the same code as doctor's) and the one refusal message."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from echobase.platform.doctor import (
    SUGGESTED_OFFSET,
    PortUse,
    classify_ports,
    port_checks,
    ways_out,
)
from echobase.platform.preflight import (
    PortsUnavailable,
    held_ports,
    listening_sockets,
    needed_ports,
    refusal,
)
from echobase.platform.stack import (
    DEFAULT_COLOUR_PORTS,
    DEFAULT_DURABLE_PORTS,
    Stack,
    resolve_ports,
)


def stack(offset: int = 0) -> Stack:
    return Stack(Path("/nonexistent"), resolve_ports(offset))


def judged(ports: dict[int, bool | None], ours: dict[int, str] | None = None) -> list[PortUse]:
    """``ports``: port -> what the probe says (True free, False taken, None privileged)."""
    return classify_ports(
        [("devlocal", f"key{port}", port) for port in ports], ours or {}, ports.__getitem__
    )


def test_the_suggested_offset_moves_every_default_port_above_the_privileged_ones():
    defaults = [
        port
        for table in (*DEFAULT_DURABLE_PORTS.values(), *DEFAULT_COLOUR_PORTS.values())
        for port in table.values()
    ]
    assert min(defaults) < 1024  # else there would be nothing to fix
    moved = [port for _, _, port in resolve_ports(SUGGESTED_OFFSET).all()]
    assert min(moved) >= 1024 and max(moved) <= 65535


def test_needed_ports_follow_what_the_command_starts():
    everything = needed_ports(stack(), "devlocal")
    assert {owner for owner, _, _ in everything} == {"devlocal", "blue", "green"}
    assert ("devlocal", "lb_https", 443) in everything
    durable = needed_ports(stack(), "ci", colours=False)
    assert {owner for owner, _, _ in durable} == {"ci"} and ("ci", "lb_http", 180) in durable
    colours = needed_ports(stack(), "devlocal", durable=False)
    assert {owner for owner, _, _ in colours} == {"blue", "green"}


def test_held_ports_are_every_port_of_an_active_program():
    held = held_ports(stack(), {"echobase-devlocal-durable-nginx", "echobase-green-api-gateway"})
    assert held == {
        80: "echobase-devlocal-durable-nginx",
        443: "echobase-devlocal-durable-nginx",
        8080: "echobase-devlocal-durable-nginx",
        8081: "echobase-devlocal-durable-nginx",
        3101: "echobase-green-api-gateway",
    }
    assert held_ports(stack(), set()) == {}


def test_ports_of_ours_are_never_probed():
    def probe(port: int) -> bool | None:
        raise AssertionError(f"probed {port}")

    uses = classify_ports([("devlocal", "lb_https", 443)], {443: "nginx"}, probe)
    assert uses == [PortUse("devlocal", "lb_https", 443, "ours", "nginx")]


def test_each_probe_answer_is_a_state():
    uses = judged({1: True, 2: False, 3: None, 4: False}, ours={4: "echobase-x"})
    assert [u.state for u in uses] == ["free", "taken", "privileged", "ours"]


def test_nothing_to_refuse_when_every_port_is_free_or_ours():
    assert refusal(judged({3306: True, 443: False}, ours={443: "nginx"}), 1024) is None


def test_privileged_ports_get_one_message_with_the_three_ways_out():
    uses = classify_ports(
        needed_ports(stack(), "devlocal"), {}, lambda port: None if port < 1024 else True
    )
    message = refusal(uses, 1024)
    assert message is not None
    assert "80 (devlocal lb_http), 443 (devlocal lb_https)" in message
    assert "ports below 1024 need root" in message
    assert "ECHOBASE_PORT_OFFSET=10000 bash scripts/run" in message
    assert "echobase.toml" in message
    assert "[ports.devlocal] lb_http = 10080, lb_https = 10443" in message
    assert "sudo sysctl net.ipv4.ip_unprivileged_port_start=80" in message
    assert message.endswith("Nothing was started.")
    assert "in use by another program" not in message


def test_the_sysctl_value_is_the_lowest_privileged_port():
    uses = classify_ports(needed_ports(stack(), "ci"), {}, lambda p: None if p < 1024 else True)
    message = refusal(uses)
    assert message is not None
    assert "ip_unprivileged_port_start=180" in message
    assert "180 (ci lb_http)" in message and "1443" not in message


def test_a_taken_port_names_the_port_the_service_and_who_holds_it():
    uses = judged({3306: False, 4566: True, 9090: False})
    message = refusal(uses, 1024, {3306: "mariadbd (pid 42) of user root"})
    assert message is not None
    assert "3306 (devlocal key3306): mariadbd (pid 42) of user root" in message
    assert "9090 (devlocal key9090)" in message and "4566" not in message
    assert "ECHOBASE_PORT_OFFSET" in message and "ip_unprivileged_port_start" not in message


def test_doctor_and_the_preflight_say_the_same_ways_out():
    uses = judged({80: None, 443: None, 3306: True})
    fixes = {check.fix for check in port_checks(uses) if check.outcome == "fail"}
    assert fixes == {"; or ".join(ways_out([u for u in uses if u.state == "privileged"]))}
    message = refusal(uses, 1024)
    assert message is not None
    assert all(way in message for way in ways_out(uses[:2]))


def test_doctor_rows_keep_their_names_and_details():
    checks = port_checks(judged({80: True, 443: False}, ours={80: "echobase-x"}))
    assert [(c.name, c.outcome, c.detail) for c in checks] == [
        ("port 80 (devlocal key80)", "ok", "in use by echobase-x"),
        ("port 443 (devlocal key443)", "fail", "in use by another program"),
    ]
    assert "ECHOBASE_PORT_OFFSET" in checks[1].fix


def test_the_refusal_as_json_lists_only_the_problem_ports():
    uses = judged({80: None, 3306: True})
    data = PortsUnavailable(uses, "message").as_dict()
    assert data["ok"] is False and data["message"] == "message"
    assert data["ports"] == [
        {"port": 80, "owner": "devlocal", "key": "key80", "state": "privileged"}
    ]


def test_listening_sockets_are_read_from_proc(tmp_path):
    # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
    rows = [
        "sl local_address rem_address st queues tr retrnsmt uid timeout inode",
        "0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000 1001 0 555 1",
        "1: 0100007F:9C40 0100007F:0CEA 01 00000000:00000000 00:00000000 00000000 0 0 556 1",
    ]
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text("\n".join(rows) + "\n")
    assert listening_sockets(tmp_path) == {3306: (1001, 555)}  # the second is a connection


@pytest.mark.parametrize("offset", [0, 100])
def test_ways_out_examples_move_the_ports_by_the_suggested_offset(offset):
    uses = judged({80 + offset: None})
    assert f"key{80 + offset} = {80 + offset + SUGGESTED_OFFSET}" in ways_out(uses)[1]


@pytest.mark.parametrize(
    "command",
    [["up"], ["deploy"], ["durable", "setup", "devlocal"]],
    ids=["up", "deploy", "durable-setup"],
)
def test_a_taken_port_is_refused_before_anything_starts(tmp_path, monkeypatch, command):
    """Through the real CLI (in process): exit 2, the JSON error, no state written."""
    from typer.testing import CliRunner

    from echobase.cli.main import app
    from echobase.platform.runtime.processes import free_ports
    from echobase.platform.stack import free_port_overrides, render_ports_toml

    home = tmp_path / "state"
    ports = free_port_overrides(free_ports)
    (tmp_path / "echobase.toml").write_text(render_ports_toml(ports))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ECHOBASE_PORT_OFFSET", raising=False)
    squatted = ports["green"]["gateway"] if command == ["deploy"] else ports["devlocal"]["mariadb"]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", squatted))
        squatter.listen()
        result = CliRunner().invoke(app, [*command, "--home", str(home), "--json"])
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is False and "Nothing was started." in data["message"]
    assert [p["port"] for p in data["ports"]] == [squatted]
    assert not home.exists()


def test_the_refusal_is_printed_whole(tmp_path, monkeypatch):
    """Privileged ports, faked (root may bind them): rich must not eat "[ports.devlocal]"."""
    from typer.testing import CliRunner

    from echobase.cli.main import app
    from echobase.platform import preflight

    monkeypatch.setattr(preflight, "port_free", lambda host, port: None if port < 1024 else True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ECHOBASE_PORT_OFFSET", raising=False)
    monkeypatch.setenv("COLUMNS", "300")
    home = tmp_path / "state"
    result = CliRunner().invoke(app, ["durable", "setup", "devlocal", "--home", str(home)])
    assert result.exit_code == 2
    assert "[ports.devlocal] lb_http = 10080, lb_https = 10443" in result.output
    assert "sudo sysctl net.ipv4.ip_unprivileged_port_start=80" in result.output
    assert "Traceback" not in result.output and not home.exists()
