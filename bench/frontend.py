"""Browser app figures: the bundle's size, and how soon a person sees the page, measured in
headless Chromium through the load balancer over HTTPS on a private system.

    .venv/bin/python bench/frontend.py [--runs 15]

1. Builds a release of this working tree into a fresh state directory (free ports), sets up
   the durable layer and deploys it.
2. Size: every file of the release's bundle, raw and gzip -9, and what the LB actually sends
   for the login page (Content-Length of the gzip-encoded answers).
3. Time to first render, ``--runs`` times each, every run in a new browser context (nothing
   cached, as a first visit) and again on a reload (the hashed assets cached):
   - first contentful paint (FCP, the browser's own figure);
   - "app rendered": from the start of navigation until the login form's ``h1`` exists
     (React mounted and drew the route);
   - baseline: FCP of ``/.active-env`` (a few bytes of text from the same nginx over the same
     TLS), so the ratio says what the app adds over the network and the server.
Prints medians, min and max. Compare figures within one run: the box is shared.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from browser_support import CHROMIUM, CHROMIUM_ARGS
from echobase.platform.release import build_release
from switch import REPO, System

FCP_JS = """() => new Promise(resolve => {
  const found = performance.getEntriesByName('first-contentful-paint')[0];
  if (found) return resolve(found.startTime);
  new PerformanceObserver(list => resolve(list.getEntries()[0].startTime))
    .observe({type: 'paint', buffered: true});
})"""
# performance.now() is measured from the navigation's start, like FCP.
RENDERED_JS = "() => performance.now()"


def stats(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):7.1f} ms"
        f"  (min {min(values):.1f}, max {max(values):.1f}, n={len(values)})"
    )


def bundle_sizes(bundle: Path) -> list[tuple[str, int, int]]:
    rows = []
    for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
        data = path.read_bytes()
        rows.append((str(path.relative_to(bundle)), len(data), len(gzip.compress(data, 9))))
    return rows


def measure(lb_url: str, runs: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    figures: dict[str, list[float]] = {
        "baseline FCP (/.active-env)": [],
        "login FCP, first visit": [],
        "login rendered, first visit": [],
        "login FCP, reload (assets cached)": [],
        "login rendered, reload": [],
        "login transferred bytes, first visit": [],
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for _ in range(runs):
                context = browser.new_context(base_url=lb_url, ignore_https_errors=True)
                page = context.new_page()
                page.goto("/.active-env")
                figures["baseline FCP (/.active-env)"].append(page.evaluate(FCP_JS))
                sizes: list[int] = []
                page.on(
                    "requestfinished",
                    lambda r, sizes=sizes: sizes.append(r.sizes()["responseBodySize"]),
                )
                page.goto("/login")
                page.wait_for_selector("h1")
                figures["login rendered, first visit"].append(page.evaluate(RENDERED_JS))
                figures["login FCP, first visit"].append(page.evaluate(FCP_JS))
                page.wait_for_load_state("networkidle")
                figures["login transferred bytes, first visit"].append(float(sum(sizes)))
                page.reload()
                page.wait_for_selector("h1")
                figures["login rendered, reload"].append(page.evaluate(RENDERED_JS))
                figures["login FCP, reload (assets cached)"].append(page.evaluate(FCP_JS))
                context.close()
        finally:
            browser.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    system = System.create()
    try:
        release, _ = build_release(system.home, REPO, None)
        if release.bundle is None:
            raise SystemExit("this working tree has no frontend/")
        system.cli("durable", "setup", "devlocal")
        system.cli("deploy", "--release", release.id)
        lb_url = system.plan().lb_url

        rows = bundle_sizes(release.bundle)
        print(f"bundle of release {release.id} (frontend tree {release.frontend[:12]})")
        print(f"  {'file':48} {'raw':>10} {'gzip -9':>10}")
        for name, raw, packed in rows:
            print(f"  {name:48} {raw:>10,} {packed:>10,}")
        code = [r for r in rows if r[0].endswith((".js", ".css", ".html"))]
        print(
            f"  {'total (html + js + css)':48} {sum(r[1] for r in code):>10,}"
            f" {sum(r[2] for r in code):>10,}"
        )

        figures = measure(lb_url, args.runs)
        print(f"\ntime to first render through the LB over TLS ({args.runs} runs each)")
        for name, values in figures.items():
            if name.endswith("bytes, first visit"):
                print(f"  {name:40} median {statistics.median(values):,.0f} B")
            else:
                print(f"  {name:40} {stats(values)}")
        base = statistics.median(figures["baseline FCP (/.active-env)"])
        for name in ("login FCP, first visit", "login rendered, first visit"):
            ratio = statistics.median(figures[name]) / base
            print(f"  ratio {name} / baseline FCP: {ratio:.2f}")
    finally:
        system.destroy()


if __name__ == "__main__":
    main()
