"""Which colour production traffic goes to, as a small file nginx reads on every request.

The routing state (``routing.json`` in the load balancer's home) is the single record of the
live colour: nginx's njs module evaluates ``$echobase_live`` per request from it (see
:func:`render_script`), and routing, X-Served-By, ``/.active-env`` and the live-colour gauge
all read that one variable, so none of them can disagree with where traffic goes. A switch
replaces the file whole; nothing reloads, so no kept-alive connection is closed under a
client (a reload's retiring workers did that: issue 20).

Failing closed: the writer keeps a copy of the last state it wrote (``routing.last-good.json``).
A state file that is missing, unreadable or not a valid state routes by that copy; with
both unusable, no colour is live (503), never a guessed one. Rendering and parsing are pure;
:func:`write_state` and :func:`read_state` are the thin part.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from echobase.platform.runtime.files import replace_private

COLOURS = ("blue", "green")
NO_COLOUR = "none"
STATE_FILE = "routing.json"
LAST_GOOD_FILE = "routing.last-good.json"
SCRIPT_FILE = "routing.js"
# The njs module's name in the config (js_import) and the variable it sets.
MODULE = "echobase_routing"
VARIABLE = "echobase_live"


@dataclass(frozen=True)
class RoutingFiles:
    home: Path  # the load balancer's home

    @property
    def state(self) -> Path:
        return self.home / STATE_FILE

    @property
    def last_good(self) -> Path:
        return self.home / LAST_GOOD_FILE

    @property
    def script(self) -> Path:
        return self.home / SCRIPT_FILE


def state_text(live: str | None) -> str:
    """The routing state naming ``live`` (None: no colour is live)."""
    if live is not None and live not in COLOURS:
        raise ValueError(f"live must be one of {COLOURS} or None, not {live!r}")
    return json.dumps({"live": live or NO_COLOUR}) + "\n"


def parse_state(text: str) -> str | None:
    """Inverse of :func:`state_text`, as strict as the script: ValueError for anything it
    would not route by."""
    try:
        state = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"routing state is not JSON: {exc}") from None
    live = state.get("live") if isinstance(state, dict) else None
    if live == NO_COLOUR:
        return None
    if live not in COLOURS:
        raise ValueError(f"routing state names no colour: {text.strip()[:80]!r}")
    return str(live)


def render_script(files: RoutingFiles) -> str:
    """The njs module behind ``$echobase_live``. njs 0.7 (Debian 12's) gives each request a
    VM of its own, so nothing is remembered between requests: the state is read each time
    (a read of a page-cached file of a few bytes)."""
    colours = ", ".join(f'"{colour}"' for colour in COLOURS)
    return f"""// Rendered by echobase.platform.durable.routing: do not edit by hand.
import fs from "fs";

const STATE = {json.dumps(str(files.state))};
const LAST_GOOD = {json.dumps(str(files.last_good))};
const COLOURS = [{colours}, "{NO_COLOUR}"];

function read(path) {{
    try {{
        const state = JSON.parse(fs.readFileSync(path, "utf8"));
        if (state !== null && COLOURS.indexOf(state.live) >= 0) {{
            return state.live;
        }}
    }} catch (e) {{
        // missing, unreadable or not JSON: the caller falls back
    }}
    return null;
}}

function live(r) {{
    const current = read(STATE);
    if (current !== null) {{
        return current;
    }}
    const last = read(LAST_GOOD);
    r.warn("echobase: " + STATE + " is not a routing state; routing by " + LAST_GOOD);
    return last !== null ? last : "{NO_COLOUR}";
}}

export default {{ live }};
"""


def config_lines(files: RoutingFiles, module_path: Path) -> tuple[list[str], list[str]]:
    """nginx config lines: (main context, http context)."""
    return (
        [f"load_module {module_path};"],
        [
            f"    js_path {files.home};",
            f"    js_import {MODULE} from {SCRIPT_FILE};",
            f"    js_set ${VARIABLE} {MODULE}.live;",
        ],
    )


# --- thin: the files ------------------------------------------------------------------------


def write_state(files: RoutingFiles, live: str | None) -> bool:
    """Make ``live`` the colour traffic goes to, at once (nginx reads the file per request).
    Durable before it returns; the last-good copy follows. True if it changed."""
    text = state_text(live)
    try:
        if files.state.read_text() == text and files.last_good.read_text() == text:
            return False
    except OSError:
        pass
    replace_private(files.state, text, durable=True)
    replace_private(files.last_good, text, durable=True)
    return True


def read_state(files: RoutingFiles) -> tuple[bool, str | None]:
    """(found, live): the state as nginx routes by it, falling back as the script does;
    found is False when neither file holds a state."""
    for path in (files.state, files.last_good):
        try:
            return True, parse_state(path.read_text())
        except (OSError, ValueError):
            continue
    return False, None
