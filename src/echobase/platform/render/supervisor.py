"""supervisord's configuration rendered from plain values: one ``programs/NAME.conf`` per
program (its own process group, supervisor's unit of add and remove) and the daemon's own
file. Pure: ``runtime/supervisor.py`` writes these files and drives the daemon."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

# sun_path is 108 bytes including the terminating NUL. supervisord first binds a temporary
# "<socket>.<pid>" next to the real path and hard-links it into place, so the pid suffix
# (up to 8 bytes with pid_max at 2**22) has to fit as well.
UNIX_PATH_MAX = 107
_SOCKET_TEMP_SUFFIX = len(".4194304")
MAX_SOCKET_PATH = UNIX_PATH_MAX - _SOCKET_TEMP_SUFFIX

LOG_MAXBYTES = "10MB"
LOG_BACKUPS = 3

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# supervisor reads its files with inline comments enabled: ";" or "#" after whitespace ends
# the value, wherever it is. A quoted shell argument may still contain that pair.
_INLINE_COMMENT = re.compile(r"(\s)([;#])")
# supervisor textually replaces "%(here)s" before %-expansion, even inside an escaped "%%".
_HERE = "%(here)s"

# Stop signals a service may be given. supervisord takes any name the signal module knows;
# a fixed list keeps this module free of the runtime's imports and catches typos the same.
STOP_SIGNALS = frozenset({"TERM", "HUP", "INT", "QUIT", "KILL", "USR1", "USR2", "STOP", "CONT"})


class SupervisorError(RuntimeError):
    """supervisord refused or failed a request; ``fault`` is supervisor's name for why."""

    def __init__(self, message: str, fault: str | None = None) -> None:
        super().__init__(message)
        self.fault = fault


@dataclass(frozen=True)
class Program:
    """One long-running service as supervisord should run it."""

    name: str
    # Stored as a tuple, so a Program stays immutable and hashable.
    command: Sequence[str]
    # stdout and stderr both go here; supervisord rotates it.
    log_file: Path
    directory: Path | None = None
    environment: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    # True: restart whenever it exits, whatever the exit code, for as long as it keeps
    # exiting after startsecs. A service that exits is a crash from the platform's view.
    autorestart: bool = True
    # The process must stay up this long to count as started; quicker exits are retried
    # startretries times (with backoff) before the program is FATAL.
    startsecs: int = 1
    startretries: int = 3
    stopsignal: str = "TERM"
    # After this, supervisord sends SIGKILL.
    stopwaitsecs: int = 30
    # Signal the whole process group, so a service's own children cannot outlive it.
    stopasgroup: bool = True
    killasgroup: bool = True
    priority: int = 999

    def __post_init__(self) -> None:
        validate_name(self.name)
        if isinstance(self.command, str) or not self.command:
            raise ValueError(f"{self.name}: command must be a non-empty list of arguments")
        # Frozen, yet the caller's list would stay mutable; take our own copy.
        object.__setattr__(self, "command", tuple(str(arg) for arg in self.command))
        object.__setattr__(self, "environment", MappingProxyType(dict(self.environment)))
        object.__setattr__(self, "log_file", Path(self.log_file))
        if self.directory is not None:
            object.__setattr__(self, "directory", Path(self.directory))
        # Relative paths would resolve against supervisord's working directory, not ours.
        for label, path in (("log_file", self.log_file), ("directory", self.directory)):
            if path is not None and not path.is_absolute():
                raise ValueError(f"{self.name}: {label} must be absolute, got {path}")
        for label, number in (
            ("startsecs", self.startsecs),
            ("startretries", self.startretries),
            ("stopwaitsecs", self.stopwaitsecs),
        ):
            if not isinstance(number, int) or number < 0:
                raise ValueError(f"{self.name}: {label} must be a non-negative int")
        signame = self.stopsignal.upper().removeprefix("SIG")
        if signame not in STOP_SIGNALS:
            raise ValueError(f"{self.name}: unknown stop signal {self.stopsignal!r}")
        object.__setattr__(self, "stopsignal", signame)
        if self.stopasgroup and not self.killasgroup:
            # supervisord rejects this pair: a group asked to stop must also be killable.
            raise ValueError(f"{self.name}: stopasgroup requires killasgroup")


def validate_name(name: str) -> str:
    """A program name is also a process group name and a file name: keep it plain."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid program name {name!r}: use letters, digits, '-' and '_', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class SupervisorPaths:
    """Where one supervisord keeps its state, under the platform's state directory."""

    home: Path

    def __post_init__(self) -> None:
        # supervisord runs from its own directory; a relative path would mean another place.
        object.__setattr__(self, "home", Path(self.home).absolute())

    @property
    def dir(self) -> Path:
        return self.home / "supervisor"

    @property
    def config(self) -> Path:
        return self.dir / "supervisord.conf"

    @property
    def socket(self) -> Path:
        return self.dir / "supervisor.sock"

    @property
    def pidfile(self) -> Path:
        return self.dir / "supervisord.pid"

    @property
    def logfile(self) -> Path:
        return self.logs_dir / "supervisord.log"

    @property
    def programs_dir(self) -> Path:
        return self.dir / "programs"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def lockfile(self) -> Path:
        return self.dir / "supervisord.lock"

    def program_file(self, name: str) -> Path:
        return self.programs_dir / f"{name}.conf"

    def log_for(self, name: str) -> Path:
        """The conventional log file of a program; Program.log_file may point elsewhere."""
        return self.logs_dir / f"{name}.log"


def check_socket_path(path: Path) -> None:
    """Fail early and by name: a too-long socket path otherwise surfaces as a vague bind error."""
    length = len(str(path).encode("utf-8", "surrogateescape"))  # os.fsencode
    if length > MAX_SOCKET_PATH:
        raise SupervisorError(
            f"supervisor socket path is {length} bytes, over the {MAX_SOCKET_PATH}-byte limit "
            f"of unix sockets (sun_path, minus supervisord's temporary suffix): {path}; "
            "use a shorter state directory"
        )


def _ini(value: str, what: str, quoted: bool = False) -> str:
    """A value as supervisor will read it back verbatim: ini-safe, with '%' escaped."""
    if any(char in value for char in "\r\n\0"):
        raise ValueError(f"{what}: newlines and NUL cannot be written to a supervisor config")
    if not quoted and value != value.strip():
        raise ValueError(f"{what}: leading or trailing whitespace would be stripped")
    if _INLINE_COMMENT.search(value):
        raise ValueError(f"{what}: ';' or '#' after whitespace starts a comment in supervisor")
    if _HERE in value:
        raise ValueError(f"{what}: {_HERE!r} is always expanded by supervisor")
    return value.replace("%", "%%")


def _path(path: Path, what: str) -> str:
    return _ini(str(path), what)


def render_command(argv: Sequence[str]) -> str:
    """argv as supervisor's ``command=``: split with shlex (POSIX) after %-expansion."""
    for arg in argv:
        # supervisor reads its files in text mode, where a lone "\r" becomes "\n".
        if any(char in arg for char in "\r\0"):
            raise ValueError("command arguments cannot contain carriage returns or NUL")
    joined = shlex.join(argv).replace("%", "%%")
    # Every whitespace and every "(" in shlex.join's output sits inside single quotes, where
    # an empty '' pair splits the text without changing the argument. That lets a newline
    # continue the ini value (continuation lines are indented, then stripped: the '' keeps
    # the argument's own indentation), keeps configparser from seeing a comment, and keeps
    # "%(here)s" from being matched.
    joined = joined.replace("\n", "\n ''")
    joined = _INLINE_COMMENT.sub(r"\1''\2", joined)
    return joined.replace("%%(here)s", "%%''(here)s")


def _env_value(key: str, value: str) -> str:
    # supervisor 4.3 parses environment= with shlex in legacy mode: no escapes of any kind, and
    # quote characters are stripped from both ends of each value. Later versions parse it in
    # POSIX mode, where a backslash inside double quotes escapes '"' and '\'. Only values that
    # read back identically under both are written; anything else is an error, not a surprise.
    # Error messages name the variable, never the value: it may be a secret.
    what = f"environment variable {key}"
    if value[:1] in ("'", '"') or value[-1:] in ("'", '"'):
        raise ValueError(f"{what}: supervisor strips quotes at the start or end of a value")
    if "\\\\" in value or value.endswith("\\"):
        raise ValueError(f"{what}: supervisor versions disagree on backslashes in this value")
    escaped = _ini(value, what, quoted=True)
    if '"' not in value:
        return f'"{escaped}"'
    if "'" not in value and "\\" not in value:
        return f"'{escaped}'"
    raise ValueError(f"{what}: a value with both quote kinds cannot be written for supervisor")


def render_environment(environment: Mapping[str, str]) -> str:
    parts = []
    for key, value in sorted(environment.items()):
        if not _ENV_KEY.fullmatch(key):
            raise ValueError(f"invalid environment variable name {key!r}")
        parts.append(f"{key}={_env_value(key, str(value))}")
    return ",".join(parts)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def render_program(program: Program) -> str:
    """One ``[program:NAME]`` section: the whole content of ``programs/NAME.conf``."""
    lines = [
        f"[program:{program.name}]",
        f"command={render_command(program.command)}",
    ]
    if program.directory is not None:
        lines.append(f"directory={_path(program.directory, 'directory')}")
    if program.environment:
        lines.append(f"environment={render_environment(program.environment)}")
    lines += [
        # The platform starts services itself, in dependency order; supervisord starting
        # them at boot or on addProcessGroup would race that.
        "autostart=false",
        f"autorestart={_bool(program.autorestart)}",
        f"startsecs={program.startsecs}",
        f"startretries={program.startretries}",
        f"stopsignal={program.stopsignal}",
        f"stopwaitsecs={program.stopwaitsecs}",
        f"stopasgroup={_bool(program.stopasgroup)}",
        f"killasgroup={_bool(program.killasgroup)}",
        f"priority={program.priority}",
        # One log per process, in the order things happened; stderr is where tracebacks go.
        "redirect_stderr=true",
        f"stdout_logfile={_path(program.log_file, 'log_file')}",
        f"stdout_logfile_maxbytes={LOG_MAXBYTES}",
        f"stdout_logfile_backups={LOG_BACKUPS}",
    ]
    return "\n".join(lines) + "\n"


def render_supervisord_config(paths: SupervisorPaths) -> str:
    check_socket_path(paths.socket)
    sock = _path(paths.socket, "socket")
    return "\n".join(
        [
            "; Written by echobase; programs are in programs/*.conf, one process group each.",
            "; Inspect with: supervisorctl -c " + str(paths.config),
            "",
            "[unix_http_server]",
            f"file={sock}",
            # Whoever can connect can run anything as us; the directory is 0700 too.
            "chmod=0700",
            "",
            "[supervisord]",
            f"logfile={_path(paths.logfile, 'logfile')}",
            f"logfile_maxbytes={LOG_MAXBYTES}",
            f"logfile_backups={LOG_BACKUPS}",
            "loglevel=info",
            f"pidfile={_path(paths.pidfile, 'pidfile')}",
            f"childlogdir={_path(paths.logs_dir, 'logs_dir')}",
            # Logs and files the services create are private to this user by default.
            "umask=077",
            # Daemonizes: whoever starts it returns at once, and it outlives the CLI.
            "nodaemon=false",
            # Not the caller's working directory, which may be unmounted or deleted later.
            f"directory={_path(paths.dir, 'directory')}",
            "identifier=echobase",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{sock}",
            "",
            "[include]",
            # Relative to this file's directory; a relative pattern also survives a home path
            # with spaces, which this whitespace-separated list could not hold.
            "files = programs/*.conf",
            "",
        ]
    )
