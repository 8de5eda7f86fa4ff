"""Which colour production traffic goes to, as a small file nginx reads on every request.

The routing state (``routing.json`` in the load balancer's home) is the single record of
where traffic goes: nginx's njs module evaluates, per request, the colour that serves it
(``$echobase_live``), the colour holding the majority (``$echobase_active``, answered at
``/.active-env``) and the weights (``/.routing``), all from that one file (see
:func:`render_script`). A switch replaces the file whole; nothing reloads, so no kept-alive
connection is closed under a client (a reload's retiring workers did that: issue 20).

A canary sends a share of users to the other colour. A user is put in a bucket (0-99) once:
from the ``echobase_bucket`` cookie if the browser has one, else from a hash of the request's
Authorization header (API clients), else at random; nginx then sets the cookie, so a page
and every call it makes come from one colour for the whole canary. The canary's ``seed``
shifts the buckets, so each canary picks other users, while raising its percentage only
adds users to it (nobody flips back).

Failing closed: the writer keeps a copy of the last state it wrote (``routing.last-good.json``).
A state file that is missing, unreadable or not a valid state routes by that copy; with
both unusable, no colour is live (503), never a guessed one. Rendering and parsing are pure;
``durable/routing.py`` writes and reads the files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echobase.platform.stack import COLOURS

NO_COLOUR = "none"
STATE_FILE = "routing.json"
LAST_GOOD_FILE = "routing.last-good.json"
SCRIPT_FILE = "routing.js"
# The njs module's name in the config (js_import) and the variables it sets.
MODULE = "echobase_routing"
VARIABLE = "echobase_live"  # the colour serving this request
ACTIVE_VARIABLE = "echobase_active"  # the colour holding the majority: /.active-env
WEIGHTS_VARIABLE = "echobase_routing"  # the body of /.routing
COOKIE_VARIABLE = "echobase_bucket_cookie"  # a Set-Cookie value, or empty
BUCKET_COOKIE = "echobase_bucket"
# Long enough to outlast any canary; a later canary reuses the bucket under a new seed.
BUCKET_COOKIE_ATTRIBUTES = "; Path=/; Max-Age=86400; Secure; HttpOnly; SameSite=Lax"
BUCKETS = 100


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


def weight_variable(colour: str) -> str:
    return f"echobase_weight_{colour}"


@dataclass(frozen=True)
class Canary:
    colour: str  # the colour the canary's users go to
    percent: int  # 1-99; 0 is no canary and 100 a full switch
    seed: int = 0  # 0-99: which buckets are the canary's

    def __post_init__(self) -> None:
        if self.colour not in COLOURS:
            raise ValueError(f"canary colour must be one of {COLOURS}, not {self.colour!r}")
        for name, value, low, high in (
            ("percent", self.percent, 1, BUCKETS - 1),
            ("seed", self.seed, 0, BUCKETS - 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"canary {name} must be a whole number {low}-{high}: {value!r}")


@dataclass(frozen=True)
class RoutingState:
    live: str | None  # everyone outside the canary goes here; None: no colour is live
    canary: Canary | None = None

    def __post_init__(self) -> None:
        if self.live is not None and self.live not in COLOURS:
            raise ValueError(f"live must be one of {COLOURS} or None, not {self.live!r}")
        if self.canary is not None:
            if self.live is None:
                raise ValueError("a canary needs a live colour beside it")
            if self.canary.colour == self.live:
                raise ValueError(f"the canary colour {self.live} is already live")

    @property
    def active(self) -> str | None:
        """The colour holding the majority of users (the live one at a 50/50 tie)."""
        if self.canary is not None and self.canary.percent > BUCKETS // 2:
            return self.canary.colour
        return self.live

    def weights(self) -> dict[str, int]:
        """Percent of users per colour."""
        shares = dict.fromkeys(COLOURS, 0)
        if self.live is not None:
            shares[self.live] = BUCKETS
        if self.canary is not None:
            shares[self.canary.colour] = self.canary.percent
            shares[str(self.live)] = BUCKETS - self.canary.percent
        return shares

    def route(self, bucket: int) -> str | None:
        """The colour a user in ``bucket`` goes to (what the script decides)."""
        if self.canary is None:
            return self.live
        shifted = (bucket + self.canary.seed) % BUCKETS
        return self.canary.colour if shifted < self.canary.percent else self.live

    def as_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"live": self.live or NO_COLOUR}
        if self.canary is not None:
            state["canary"] = {
                "colour": self.canary.colour,
                "percent": self.canary.percent,
                "seed": self.canary.seed,
            }
        return state

    @classmethod
    def from_dict(cls, state: object) -> RoutingState:
        if not isinstance(state, dict):
            raise ValueError("a routing state is a JSON object")
        live = state.get("live")
        if live != NO_COLOUR and live not in COLOURS:
            raise ValueError(f"routing state names no colour: {live!r}")
        canary = state.get("canary")
        if canary is not None and not isinstance(canary, dict):
            raise ValueError("the canary of a routing state is an object")
        try:
            return cls(
                None if live == NO_COLOUR else str(live),
                None
                if canary is None
                else Canary(canary.get("colour"), canary.get("percent"), canary.get("seed")),
            )
        except TypeError as exc:
            raise ValueError(f"not a routing state: {exc}") from None


def state_text(state: RoutingState | str | None) -> str:
    """The file for ``state`` (a colour alone: that colour, no canary; None: no colour)."""
    if not isinstance(state, RoutingState):
        state = RoutingState(state)
    return json.dumps(state.as_dict()) + "\n"


def parse_state(text: str) -> RoutingState:
    """Inverse of :func:`state_text`, as strict as the script: ValueError for anything it
    would not route by."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"routing state is not JSON: {exc}") from None
    try:
        return RoutingState.from_dict(raw)
    except ValueError as exc:
        raise ValueError(f"{exc}: {text.strip()[:120]!r}") from None


def parse_weights_answer(body: str) -> RoutingState:
    """What ``GET /.routing`` answers: the state without its seed (given as 0)."""
    answer = json.loads(body)
    if isinstance(answer, dict) and isinstance(answer.get("canary"), dict):
        answer = {**answer, "canary": {**answer["canary"], "seed": 0}}
    return RoutingState.from_dict(answer)


def render_script(files: RoutingFiles) -> str:
    """The njs module behind the routing variables. njs 0.7 (Debian 12's) gives each request
    a VM of its own, so the state read once is this request's alone; the next request reads
    the file again (a page-cached file of a few bytes)."""
    colours = ", ".join(f'"{colour}"' for colour in COLOURS)
    weights = "\n".join(
        f'function weight_{c}(r) {{ return String(weight(current(r), "{c}")); }}' for c in COLOURS
    )
    exported = ", ".join(
        ["live", "active", "routing", "bucket_cookie", *(f"weight_{c}" for c in COLOURS)]
    )
    return f"""// Rendered by echobase.platform.durable.routing: do not edit by hand.
import fs from "fs";

const STATE = {json.dumps(str(files.state))};
const LAST_GOOD = {json.dumps(str(files.last_good))};
const COLOURS = [{colours}];
const NONE = "{NO_COLOUR}";
const BUCKETS = {BUCKETS};
const COOKIE = "{BUCKET_COOKIE}";
const COOKIE_ATTRIBUTES = "{BUCKET_COOKIE_ATTRIBUTES}";

// This request's state: each request runs in a VM of its own, so nothing outlives it.
let state = null;

function whole(value, low, high) {{
    return Number.isInteger(value) && value >= low && value <= high;
}}

function valid(s) {{
    if (s === null || typeof s !== "object") {{
        return false;
    }}
    if (s.live !== NONE && COLOURS.indexOf(s.live) < 0) {{
        return false;
    }}
    const c = s.canary;
    if (c === undefined || c === null) {{
        return true;
    }}
    return s.live !== NONE && COLOURS.indexOf(c.colour) >= 0 && c.colour !== s.live
        && whole(c.percent, 1, BUCKETS - 1) && whole(c.seed, 0, BUCKETS - 1);
}}

function read(path) {{
    try {{
        const s = JSON.parse(fs.readFileSync(path, "utf8"));
        if (valid(s)) {{
            return s;
        }}
    }} catch (e) {{
        // missing, unreadable or not JSON: the caller falls back
    }}
    return null;
}}

function current(r) {{
    if (state === null) {{
        state = read(STATE);
        if (state === null) {{
            r.warn("echobase: " + STATE + " is not a routing state; routing by " + LAST_GOOD);
            state = read(LAST_GOOD) || {{ live: NONE }};
        }}
    }}
    return state;
}}

function cookieBucket(r) {{
    const value = r.variables.cookie_{BUCKET_COOKIE};
    return value !== undefined && /^[0-9]{{1,2}}$/.test(value) ? Number(value) : null;
}}

// FNV-1a: a session's token always lands in the same bucket.
function hash(text) {{
    let h = 0x811c9dc5;
    for (let i = 0; i < text.length; i++) {{
        h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
    }}
    return h;
}}

function bucket(r) {{
    const kept = cookieBucket(r);
    if (kept !== null) {{
        return kept;
    }}
    return hash(r.headersIn.Authorization || r.variables.request_id) % BUCKETS;
}}

function live(r) {{
    const s = current(r);
    const c = s.canary;
    if (!c) {{
        return s.live;
    }}
    return (bucket(r) + c.seed) % BUCKETS < c.percent ? c.colour : s.live;
}}

function active(r) {{
    const s = current(r);
    return s.canary && s.canary.percent > BUCKETS / 2 ? s.canary.colour : s.live;
}}

function weight(s, colour) {{
    if (s.canary) {{
        if (s.canary.colour === colour) {{
            return s.canary.percent;
        }}
        return s.live === colour ? BUCKETS - s.canary.percent : 0;
    }}
    return s.live === colour ? BUCKETS : 0;
}}

{weights}

function routing(r) {{
    const s = current(r);
    const shares = {{}};
    COLOURS.forEach(function (c) {{ shares[c] = weight(s, c); }});
    const answer = {{ active: active(r), live: s.live, weights: shares }};
    if (s.canary) {{
        answer.canary = {{ colour: s.canary.colour, percent: s.canary.percent }};
    }}
    return JSON.stringify(answer);
}}

// During a canary, a user without a bucket gets one, so their next requests stay put.
function bucket_cookie(r) {{
    if (!current(r).canary || cookieBucket(r) !== null) {{
        return "";
    }}
    return COOKIE + "=" + bucket(r) + COOKIE_ATTRIBUTES;
}}

export default {{ {exported} }};
"""


def config_lines(files: RoutingFiles, module_path: Path) -> tuple[list[str], list[str]]:
    """nginx config lines: (main context, http context)."""
    variables = [
        (VARIABLE, "live"),
        (ACTIVE_VARIABLE, "active"),
        (WEIGHTS_VARIABLE, "routing"),
        (COOKIE_VARIABLE, "bucket_cookie"),
        *((weight_variable(c), f"weight_{c}") for c in COLOURS),
    ]
    return (
        [f"load_module {module_path};"],
        [
            f"    js_path {files.home};",
            f"    js_import {MODULE} from {SCRIPT_FILE};",
            *(f"    js_set ${name} {MODULE}.{function};" for name, function in variables),
        ],
    )
