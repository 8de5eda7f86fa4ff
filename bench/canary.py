"""Canary figures (issue 20): a bad release and a good one, each deployed as a canary with
step-by-step promotion while users order through the load balancer, on a private system
(temporary state directory, free ports) beside anything running.

    .venv/bin/python bench/canary.py [--rounds 3] [--users 100] [--error-ratio 0.5]
                                     [--step-seconds 15] [--scenarios bad,good,bad-full]

The system is the canary test's (tests/canary_support.py): release A live on green,
Prometheus scraping every second, ``[analysis]`` with 1 s checks, at least 10 requests
before a verdict, steps 10 -> 50 -> 100 %. Each round:

- **bad**: ``deploy --canary 10 --promote`` of HEAD plus a commit whose gateway answers 500
  to ``--error-ratio`` of the orders of more than one item (its one-item smoke test passes).
  Prints how long the canary ran before its analysis aborted it, the users in the canary's
  buckets, the users who saw an error, and the orders answered 201 and stored.
- **good**: the same for release B: the time to pass 10 and 50 % and the watch after the
  full switch, and the requests each colour served.
- **bad-full** (the baseline): the bad release deployed without a canary, a full switch
  watched by the same analysis: the users who saw an error before it switched back.

Every user keeps its cookies (httpx), as a browser does; each orders, then lists its
orders, with a second's pause. Figures are medians over the rounds, with min and max.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bluegreen_support import TEST_SERVICE_SETTINGS, BlueGreenSystem, deployed
from canary_support import bad_release, outcome, run_canary, set_analysis, wait_stored

MONITORING = {
    "scrape_interval_seconds": 1,
    "evaluation_interval_seconds": 1,
    "rate_window_seconds": 2,
}


def spread(values: list[float], unit: str = "", digits: int = 1) -> str:
    return (
        f"median {statistics.median(values):.{digits}f}{unit}"
        f" (min {min(values):.{digits}f}, max {max(values):.{digits}f})"
    )


def analysis_seconds(answer: dict[str, Any]) -> list[float]:
    return [float(s["seconds"]) for s in answer["steps"] if s["step"].startswith("analysis")]


def bad_round(bg: BlueGreenSystem, release_id: str, users: int) -> dict[str, float]:
    run = run_canary(bg, ["--release", release_id, "--canary", "10", "--promote"], users)
    answer = outcome(run)
    if run.result.returncode != 1 or answer["result"] != "aborted":
        raise SystemExit(f"the bad canary was not aborted: {run.result.stderr[-2000:]}")
    erred = run.users_who(lambda s: s.status is not None and s.status >= 500)
    on_canary = [u for u in run.users if run.bucket(u) in run.canary_buckets]
    outside = [u for u in erred if run.bucket(u) not in run.canary_buckets]
    uids = [uid for user in run.users for uid in user.order_uids]
    stored = wait_stored(bg, uids)
    once = sum(1 for uid in uids if stored.get(uid) == 1)
    requests = [s for s in run.samples() if s.status is not None]
    errors = sum(1 for s in requests if s.status >= 500)
    failed = sum(s.error is not None for s in run.samples())
    print(
        f"  bad:  aborted after {analysis_seconds(answer)[0]:.1f}s of canary "
        f"(shares {run.shares}); users in its buckets {len(on_canary)}/{users}, "
        f"saw an error {len(erred)} (outside its buckets: {len(outside)}); "
        f"requests {len(requests)}, 5xx {errors}, failed {failed}; "
        f"orders 201 {len(uids)}, stored once {once}"
    )
    if outside or once != len(uids):
        raise SystemExit("an error outside the canary's users, or an order not stored once")
    return {
        "abort": analysis_seconds(answer)[0],
        "on_canary": len(on_canary) / users * 100,
        "erred": len(erred) / users * 100,
        "orders": len(uids),
        "errors": errors / max(len(requests), 1) * 100,
    }


def bad_full_round(bg: BlueGreenSystem, release_id: str, users: int) -> dict[str, float]:
    run = run_canary(bg, ["--release", release_id], users)
    answer = outcome(run)
    if run.result.returncode != 1 or answer["result"] != "rolled back":
        raise SystemExit(f"the bad switch was not rolled back: {run.result.stderr[-2000:]}")
    erred = run.users_who(lambda s: s.status is not None and s.status >= 500)
    uids = [uid for user in run.users for uid in user.order_uids]
    stored = wait_stored(bg, uids)
    once = sum(1 for uid in uids if stored.get(uid) == 1)
    print(
        f"  bad-full: rolled back after {analysis_seconds(answer)[0]:.1f}s of analysis; "
        f"saw an error {len(erred)}/{users}; orders 201 {len(uids)}, stored once {once}"
    )
    if once != len(uids):
        raise SystemExit("an order not stored once")
    return {"abort": analysis_seconds(answer)[0], "erred": len(erred) / users * 100}


def good_round(bg: BlueGreenSystem, release_id: str, users: int) -> dict[str, float]:
    run = run_canary(bg, ["--release", release_id, "--canary", "10", "--promote"], users)
    answer = outcome(run)
    if run.result.returncode != 0 or answer["weights"].get(answer["to"]) != 100:
        raise SystemExit(f"the good canary did not reach 100 %: {run.result.stderr[-2000:]}")
    steps = analysis_seconds(answer)
    uids = [uid for user in run.users for uid in user.order_uids]
    stored = wait_stored(bg, uids)
    failed = [s for s in run.samples() if s.error is not None or (s.status or 0) >= 500]
    print(
        f"  good: 10 -> 50 -> 100 % in {run.seconds:.1f}s of deploy (analyses "
        f"{', '.join(f'{s:.1f}s' for s in steps)}); served {dict(run.served())}; "
        f"failed {len(failed)}; orders 201 {len(uids)}, stored once "
        f"{sum(1 for uid in uids if stored.get(uid) == 1)}"
    )
    return {"deploy": run.seconds, "failed": len(failed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--error-ratio", type=float, default=0.5)
    parser.add_argument("--step-seconds", type=float, default=15)
    parser.add_argument("--scenarios", default="bad,good,bad-full")
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")
    analysis = {
        "step_seconds": args.step_seconds,
        # As long as a step: a full switch's new targets need discovering and two scrapes.
        "after_switch_seconds": args.step_seconds,
        "interval_seconds": 1,
        "min_requests": 10,
        "steps": (10, 50, 100),
    }
    with deployed(monitoring=MONITORING) as bg:
        set_analysis(bg, TEST_SERVICE_SETTINGS, **analysis)
        bad = bad_release(bg, args.error_ratio)
        print(
            f"system in {bg.system.home}: A live on green; bad release {bad.id} "
            f"({args.error_ratio:.0%} of multi-item orders answer 500), good release "
            f"{bg.release_b.id}; {args.users} users"
        )
        bads, goods, fulls = [], [], []
        for number in range(args.rounds):
            print(f"round {number + 1}")
            if "bad" in scenarios:
                bads.append(bad_round(bg, bad.id, args.users))
            if "good" in scenarios:
                goods.append(good_round(bg, bg.release_b.id, args.users))
                bg.system.ok("switch", "green")  # A live again for the next round
            if "bad-full" in scenarios:
                fulls.append(bad_full_round(bg, bad.id, args.users))
        if bads:
            print("\nbad canary (10 %, promotion asked for):")
            print(f"  canary ran before the abort: {spread([b['abort'] for b in bads], ' s')}")
            print(
                f"  users in the canary's buckets: {spread([b['on_canary'] for b in bads], ' %')}"
            )
            print(f"  users who saw an error:        {spread([b['erred'] for b in bads], ' %')}")
            print(
                f"  5xx among all requests:        {spread([b['errors'] for b in bads], ' %', 2)}"
            )
        if goods:
            print("good canary (10 -> 50 -> 100 %):")
            print(f"  deploy, start to end: {spread([g['deploy'] for g in goods], ' s')}")
            print(f"  failed requests: {sum(g['failed'] for g in goods):.0f}")
        if fulls:
            print("bad release, full switch (no canary), same analysis:")
            print(f"  switched back after: {spread([f['abort'] for f in fulls], ' s')}")
            print(f"  users who saw an error: {spread([f['erred'] for f in fulls], ' %')}")


if __name__ == "__main__":
    main()
