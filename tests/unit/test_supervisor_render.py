"""Rendering supervisord's configuration: pure functions, checked by supervisor's own parser."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from supervisor.options import ServerOptions, UnhosedConfigParser

from echobase.platform.render.supervisor import (
    MAX_SOCKET_PATH,
    Program,
    SupervisorPaths,
    render_program,
    render_supervisord_config,
)
from echobase.platform.runtime.supervisor import Supervisor, SupervisorError

LOG = Path("/tmp/eb-unit/demo.log")  # /tmp exists: supervisor checks a log file's directory


def parse_back(program: Program, here: str = "/srv/eb/supervisor/programs") -> object:
    """What supervisord itself makes of the rendered section (its parser, its expansions)."""
    parser = UnhosedConfigParser()
    parser.read_string(render_program(program))
    parser.expand_here(here)
    (config,) = ServerOptions().processes_from_section(
        parser, f"program:{program.name}", program.name
    )
    return config


def program(**overrides: object) -> Program:
    values: dict[str, object] = {
        "name": "echobase-devlocal-durable-mariadb",
        "command": ["/usr/bin/mariadbd", "--defaults-file=/srv/eb/my.cnf"],
        "log_file": Path("/tmp/demo.log"),
    }
    values.update(overrides)
    return Program(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "argv",
    [
        ["/bin/echo", "plain"],
        ["/bin/sh", "-c", "echo 'one two' \"three\" && exit 0"],
        ["prog", "with space", "it's", 'say "hi"', "", "tab\there"],
        ["prog", "100%", "%(here)s", "%%(here)s", "%(program_name)s", "50%%"],
        ["prog", "a ; b", "a # b", "#first", ";first", "x;y", "x#y", "a\t;b"],
        ["prog", "$HOME", "`id`", "back\\slash", "trailing\\", "ünïcödé", "*.conf"],
        ["python", "-c", "import sys\nif True:\n    print(1)  # note\n\n\n;x\n#y\n", "z"],
    ],
)
def test_command_round_trips_through_supervisor(argv: list[str]) -> None:
    config = parse_back(program(command=argv))
    assert shlex.split(config.command) == argv


def test_command_is_shell_quoted_and_percent_escaped() -> None:
    text = render_program(program(command=["/bin/run", "a b", "it's", "5%"]))
    assert "command=/bin/run 'a b' 'it'\"'\"'s' 5%%\n" in text
    with pytest.raises(ValueError, match="carriage return"):
        render_program(program(command=["/bin/run", "two\r\nlines"]))


def test_environment_round_trips_through_supervisor() -> None:
    env = {
        "PLAIN": "value",
        "PERCENT": "100% sure %(here)x %%",
        "DQUOTE": 'say "hi" now',
        "SQUOTE": "it's",
        "COMMA": "a,b=c d",
        "URL": "mysql+asyncmy://u:p@127.0.0.1:3306/orders_db?charset=utf8mb4",
        "SPACES": "  padded  ",
        "EMPTY": "",
        "BACKSLASH": "C:\\dir\\file",
        "HASH": "a#b;c",
    }
    config = parse_back(program(environment=env))
    assert config.environment == env


def test_environment_is_double_quoted_with_percent_escaped() -> None:
    text = render_program(program(environment={"B": "x", "A": "5%", "C": 'a"b'}))
    # Sorted, double-quoted; a value holding '"' uses single quotes (supervisor 4.3 has no
    # escape for '"' inside double quotes).
    assert 'environment=A="5%%",B="x",C=\'a"b\'\n' in text


@pytest.mark.parametrize(
    "value",
    [
        "both ' and \" quotes",
        '"starts with a quote',
        "ends with a quote'",
        "two\nlines",
        "comment ;after space",
        "comment #after space",
        "path %(here)s",
        "ends with backslash\\",
        "double \\\\ backslash",
    ],
)
def test_environment_values_supervisor_cannot_hold_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="SECRET_VALUE") as caught:
        render_program(program(environment={"SECRET_VALUE": value}))
    assert value not in str(caught.value)  # values may be secrets: never in messages


@pytest.mark.parametrize("key", ["1ABC", "A-B", "A B", "", "A=B", "Ä"])
def test_environment_names_are_validated(key: str) -> None:
    with pytest.raises(ValueError):
        render_program(program(environment={key: "v"}))


@pytest.mark.parametrize("name", ["echobase-devlocal-durable-mariadb", "gw_blue", "a", "A1-b_2"])
def test_valid_names(name: str) -> None:
    text = render_program(program(name=name))
    assert text.startswith(f"[program:{name}]\n")
    assert parse_back(program(name=name)).name == name


@pytest.mark.parametrize(
    "name", ["", "has space", "group:proc", "a/b", "-leading", "_leading", "dot.ted", "ünï", "x\n"]
)
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="program name"):
        program(name=name)


def test_defaults_render_a_platform_managed_service() -> None:
    prog = program(directory=Path("/srv/eb/work"))
    text = render_program(prog)
    lines = set(text.splitlines())
    assert {
        "autostart=false",
        "autorestart=true",
        "startsecs=1",
        "startretries=3",
        "stopsignal=TERM",
        "stopwaitsecs=30",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        "stdout_logfile=/tmp/demo.log",
        "stdout_logfile_maxbytes=10MB",
        "stdout_logfile_backups=3",
        "directory=/srv/eb/work",
    } <= lines
    config = parse_back(prog)
    assert config.autostart is False
    assert config.redirect_stderr is True
    assert config.stdout_logfile == "/tmp/demo.log"
    assert config.stdout_logfile_maxbytes == 10 * 1024 * 1024
    assert config.stopasgroup and config.killasgroup
    assert config.directory == "/srv/eb/work"


def test_options_render_as_given_and_autostart_stays_false() -> None:
    prog = program(
        autorestart=False,
        startsecs=0,
        startretries=7,
        stopsignal="sigint",
        stopwaitsecs=5,
        stopasgroup=False,
        killasgroup=False,
        priority=10,
    )
    text = render_program(prog)
    assert "autostart=false\n" in text and "autostart=true" not in text
    assert "autorestart=false\n" in text and "stopsignal=INT\n" in text
    config = parse_back(prog)
    assert (config.startsecs, config.startretries, config.stopwaitsecs) == (0, 7, 5)
    assert (config.priority, config.autorestart, config.stopasgroup) == (10, False, False)


def test_program_validation() -> None:
    with pytest.raises(ValueError, match="absolute"):
        program(log_file=Path("logs/x.log"))
    with pytest.raises(ValueError, match="absolute"):
        program(directory=Path("work"))
    with pytest.raises(ValueError, match="signal"):
        program(stopsignal="NOPE")
    with pytest.raises(ValueError, match="killasgroup"):
        program(stopasgroup=True, killasgroup=False)
    with pytest.raises(ValueError, match="command"):
        program(command="/bin/echo hi")
    with pytest.raises(ValueError, match="command"):
        program(command=[])
    with pytest.raises(ValueError, match="startsecs"):
        program(startsecs=-1)


def test_program_is_immutable_and_hashable() -> None:
    argv = ["/bin/echo", "hi"]
    env = {"A": "1"}
    prog = program(command=argv, environment=env)
    argv.append("later")
    env["B"] = "2"
    assert prog.command == ("/bin/echo", "hi") and dict(prog.environment) == {"A": "1"}
    assert hash(prog) == hash(program(command=["/bin/echo", "hi"], environment={"A": "1"}))
    with pytest.raises(AttributeError):
        prog.name = "other"  # type: ignore[misc]


def test_rendering_is_pure() -> None:
    prog = program(environment={"A": "x"})
    assert render_program(prog) == render_program(prog)
    paths = SupervisorPaths(Path("/srv/eb"))
    assert render_supervisord_config(paths) == render_supervisord_config(paths)
    assert not Path("/srv/eb").exists()


def test_paths_layout() -> None:
    paths = SupervisorPaths(Path("/srv/eb"))
    assert paths.dir == Path("/srv/eb/supervisor")
    assert paths.config == Path("/srv/eb/supervisor/supervisord.conf")
    assert paths.socket == Path("/srv/eb/supervisor/supervisor.sock")
    assert paths.pidfile.parent == paths.dir and paths.pidfile.suffix == ".pid"
    assert paths.programs_dir == Path("/srv/eb/supervisor/programs")
    assert paths.logs_dir == Path("/srv/eb/logs")
    assert paths.logfile.parent == paths.logs_dir
    assert paths.program_file("x") == Path("/srv/eb/supervisor/programs/x.conf")
    assert paths.log_for("x") == Path("/srv/eb/logs/x.log")


def test_supervisord_config() -> None:
    paths = SupervisorPaths(Path("/srv/eb"))
    text = render_supervisord_config(paths)
    parser = UnhosedConfigParser()
    parser.read_string(text)
    assert parser.get("unix_http_server", "file") == "/srv/eb/supervisor/supervisor.sock"
    assert parser.get("unix_http_server", "chmod") == "0700"
    assert parser.get("supervisord", "pidfile") == str(paths.pidfile)
    assert parser.get("supervisord", "logfile") == str(paths.logfile)
    assert parser.get("supervisord", "childlogdir") == "/srv/eb/logs"
    assert parser.get("supervisord", "umask") == "077"
    assert parser.get("supervisord", "nodaemon") == "false"
    assert parser.get("supervisord", "identifier") == "echobase"
    assert parser.get("rpcinterface:supervisor", "supervisor.rpcinterface_factory") == (
        "supervisor.rpcinterface:make_main_rpcinterface"
    )
    assert parser.get("supervisorctl", "serverurl") == "unix:///srv/eb/supervisor/supervisor.sock"
    assert parser.get("include", "files") == "programs/*.conf"


def test_supervisord_config_escapes_percent_in_paths() -> None:
    text = render_supervisord_config(SupervisorPaths(Path("/srv/100%")))
    assert "file=/srv/100%%/supervisor/supervisor.sock" in text
    with pytest.raises(ValueError, match="comment"):
        render_supervisord_config(SupervisorPaths(Path("/srv/a ;b")))


def test_long_socket_path_is_refused_by_name() -> None:
    fits = Path("/" + "d" * (MAX_SOCKET_PATH - len("/supervisor/supervisor.sock") - 1))
    assert len(str(SupervisorPaths(fits).socket)) == MAX_SOCKET_PATH
    render_supervisord_config(SupervisorPaths(fits))
    too_long = Path(str(fits) + "x")
    with pytest.raises(SupervisorError, match=r"supervisor\.sock") as caught:
        render_supervisord_config(SupervisorPaths(too_long))
    assert str(too_long) in str(caught.value)
    with pytest.raises(SupervisorError, match="shorter"):
        Supervisor(SupervisorPaths(too_long))
