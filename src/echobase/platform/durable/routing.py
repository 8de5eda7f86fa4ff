"""The routing state's files, carried out: written durably (nginx reads them on every
request) and read back as nginx would. What they hold is ``render/routing.py``."""

from __future__ import annotations

from echobase.platform.render.routing import RoutingFiles, RoutingState, parse_state, state_text
from echobase.platform.runtime.files import replace_private


def write_state(files: RoutingFiles, state: RoutingState | str | None) -> bool:
    """Make ``state`` the routing, at once (nginx reads the file per request). Durable
    before it returns; the last-good copy follows. True if it changed."""
    text = state_text(state)
    try:
        if files.state.read_text() == text and files.last_good.read_text() == text:
            return False
    except OSError:
        pass
    replace_private(files.state, text, durable=True)
    replace_private(files.last_good, text, durable=True)
    return True


def read_state(files: RoutingFiles) -> RoutingState | None:
    """The state as nginx routes by it, falling back as the script does; None when neither
    file holds a state."""
    for path in (files.state, files.last_good):
        try:
            return parse_state(path.read_text())
        except (OSError, ValueError):
            continue
    return None
