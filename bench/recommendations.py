"""What recommendations cost a login, on a real deployed system with a large order history,
all from one run (issue 18).

    .venv/bin/python bench/recommendations.py [--orders 200000] [--users 5000]
                                              [--logins 300] [--calls 500] [--ref HEAD]

A private system (temporary state directory, free ports) driven through the real CLI: a
release of ``--ref`` (HEAD by default; ``--ref ''`` builds the working tree), the durable
layer, the release deployed. ``--orders`` orders by ``--users`` users over 11 products are
written straight into MariaDB, dated across the last 60 days (the ranking looks at 30).

Prints:

1. the two queries, timed in MariaDB itself (medians) with their EXPLAIN: the shared
   ranking (a scan of the last 30 days' orders, run by the service every 30 s in the
   background, never by a login) and the per-user query a login costs (one indexed query);
2. the tool through a real MCP client on one open session, as a gateway worker holds it:
   median and p99 of ``--calls`` calls;
3. logins through the LB, ``--logins`` per mode in alternating blocks of 25 (a drift of the
   shared machine hits both alike): with the service running, and with it stopped (the
   gateway then answers ``[]`` without asking). The difference of the medians is what
   recommendations add to a login. bcrypt runs at 4 rounds here so that the difference is
   not lost in it; the default (12 rounds) costs about 230 ms a login on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import ssl
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from echobase.app.core.secrets import DatabaseCredentials
from echobase.app.core.security import hash_password
from echobase.platform.durable import credentials
from echobase.platform.durable.mariadb import app_connection
from echobase.platform.runtime.services import supervisor_for
from support import BENCH_SERVICE_SETTINGS, ENV, REPO, System, percentile

PASSWORD = "Bench1234x"
PRODUCTS = 11
BLOCK = 25

RANKING_SQL = (
    "SELECT product_id, COUNT(*) AS orders FROM orders WHERE created_at >= %s"
    " AND product_id IS NOT NULL GROUP BY product_id ORDER BY orders DESC, product_id LIMIT 50"
)
USER_SQL = (
    "SELECT p.id, p.name, p.cost, p.sku FROM products p WHERE p.id IN ({ids}) AND NOT EXISTS"
    " (SELECT 1 FROM orders o WHERE o.user_id = %s AND o.product_id = p.id)"
)


def secret(system: System, name: str) -> str:
    client = credentials.aws_client("secretsmanager", system.plan().secrets_url)
    return str(client.get_secret_value(SecretId=name)["SecretString"])


def seed(
    creds: DatabaseCredentials, users: int, orders: int, shoppers: int
) -> list[tuple[int, str]]:
    """Users (one password for all) and their orders; returns (id, username) of each user.
    The first ``shoppers`` (who sign in below) ordered only from the long tail, so that the
    favourites are still theirs to be recommended; the rest ordered everything else."""
    rng = random.Random(18)
    hashed = hash_password(PASSWORD, 4)
    conn = app_connection(creds, autocommit=False)
    try:
        with conn.cursor() as cur:
            prefix = uuid.uuid4().hex[:6]
            rows = [
                (f"b{prefix}_{i}", f"b{prefix}_{i}@bench.local", "Bench", hashed)
                for i in range(users)
            ]
            cur.executemany(
                "INSERT INTO users (username, email, full_name, password_hash)"
                " VALUES (%s, %s, %s, %s)",
                rows,
            )
            cur.execute("SELECT id, username FROM users WHERE username LIKE %s", (f"b{prefix}_%",))
            people = [(int(i), str(n)) for i, n in cur.fetchall()]
            cur.execute("SELECT id, name, sku, cost FROM products")
            catalogue = cur.fetchall()
            now = datetime.now(UTC).replace(tzinfo=None)
            # Popularity that differs by product: a few favourites, a long tail.
            weights = [1 / (rank + 1) for rank in range(len(catalogue))]
            batch: list[tuple[Any, ...]] = []
            for _ in range(orders):
                pid, name, sku, cost = rng.choices(catalogue, weights)[0]
                user_id = rng.choice(people[shoppers:])[0]
                created = now - timedelta(seconds=rng.uniform(0, 60 * 86400))
                batch.append((str(uuid.uuid4()), user_id, pid, name, sku, 1, cost, created))
                if len(batch) == 5000:
                    insert_orders(cur, batch)
                    batch.clear()
            for user_id, _ in people[:shoppers]:
                for pid, name, sku, cost in catalogue[-4:]:
                    created = now - timedelta(days=rng.uniform(0, 30))
                    batch.append((str(uuid.uuid4()), user_id, pid, name, sku, 1, cost, created))
            insert_orders(cur, batch)
        conn.commit()
        return people
    finally:
        conn.close()


def insert_orders(cur: Any, batch: list[tuple[Any, ...]]) -> None:
    if batch:
        cur.executemany(
            "INSERT INTO orders (order_uid, user_id, product_id, product_name, sku, quantity,"
            " total_price, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(*row, row[-1]) for row in batch],
        )


@contextmanager
def cursor(creds: DatabaseCredentials) -> Iterator[Any]:
    conn = app_connection(creds)
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def time_query(creds: DatabaseCredentials, sql: str, args_of: Any, rounds: int) -> list[float]:
    seconds = []
    with cursor(creds) as cur:
        for i in range(rounds):
            started = time.perf_counter()
            cur.execute(sql, args_of(i))
            cur.fetchall()
            seconds.append(time.perf_counter() - started)
    return seconds


def explain(creds: DatabaseCredentials, sql: str, args: tuple[Any, ...]) -> list[str]:
    with cursor(creds) as cur:
        cur.execute("EXPLAIN " + sql, args)
        columns = [c[0] for c in cur.description]
        return [
            " ".join(f"{k}={v}" for k, v in zip(columns, row, strict=True) if v is not None)
            for row in cur.fetchall()
        ]


async def tool_calls(url: str, key: str, user_ids: list[int], calls: int) -> list[float]:
    async with httpx2.AsyncClient(headers={"X-API-Key": key}, timeout=5) as http:
        async with Client(streamable_http_client(url, http_client=http), cache=None) as client:
            seconds = []
            for i in range(calls):
                started = time.perf_counter()
                result = await client.call_tool(
                    "getRecommendedProducts", {"userId": user_ids[i % len(user_ids)]}
                )
                seconds.append(time.perf_counter() - started)
                assert not result.is_error, result.content
            return seconds


def logins(http: httpx.Client, names: list[str], count: int, expect_some: bool) -> list[float]:
    seconds = []
    for i in range(count):
        started = time.perf_counter()
        answer = http.post(
            "/api/v1/auth/login", json={"username": names[i % len(names)], "password": PASSWORD}
        )
        seconds.append(time.perf_counter() - started)
        assert answer.status_code == 200, answer.text
        listed = answer.json()["recommendedProducts"]
        assert bool(listed) == expect_some, listed
    return seconds


def ms(values: list[float]) -> str:
    median, p99 = statistics.median(values) * 1000, percentile(values, 0.99) * 1000
    return f"median {median:7.2f} ms  p99 {p99:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--logins", type=int, default=300)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--ref", default="HEAD")
    options = parser.parse_args()

    system = System.create(services=BENCH_SERVICE_SETTINGS)
    try:
        ref = ["--ref", options.ref] if options.ref else []
        system.cli("release", "build", *ref, "--source", str(REPO))
        system.cli("durable", "setup", ENV)
        system.cli("deploy")
        plan = system.plan()
        creds = DatabaseCredentials.from_secret(secret(system, credentials.DATABASE))
        started = time.perf_counter()
        people = seed(creds, options.users, options.orders, options.logins)
        print(
            f"seeded {options.orders} orders of {len(people)} users in "
            f"{time.perf_counter() - started:.1f} s ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)"
        )

        # The service ranks every 30 s: wait for a ranking of the seeded history.
        deadline = time.monotonic() + 90
        while httpx.get(plan.mcp_health_url).json()["checks"]["ranking"]["products"] < PRODUCTS:
            assert time.monotonic() < deadline, "the service never ranked the seeded orders"
            time.sleep(1)

        since = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=30)
        ranking = time_query(creds, RANKING_SQL, lambda _: (since,), 5)
        ranked = [row[0] for row in fetch(creds, RANKING_SQL, (since,))]
        ids = ",".join(str(i) for i in ranked)
        user_sql = USER_SQL.format(ids=ids)
        per_user = time_query(creds, user_sql, lambda i: (people[i % len(people)][0],), 200)
        print("\n1. the queries, in MariaDB")
        print(f"   ranking (background, every 30 s): {ms(ranking)}")
        for line in explain(creds, RANKING_SQL, (since,)):
            print(f"     EXPLAIN {line}")
        print(f"   per user (one a login):           {ms(per_user)}")
        for line in explain(creds, user_sql, (people[0][0],)):
            print(f"     EXPLAIN {line}")

        key = secret(system, credentials.MCP_API_KEY)
        calls = asyncio.run(
            tool_calls(plan.mcp_url, key, [p[0] for p in people[:200]], options.calls)
        )
        print(f"\n2. the tool, one open MCP session: {ms(calls)}")

        verify = ssl.create_default_context(cafile=str(plan.load_balancer.cert_file))
        names = [p[1] for p in people[: options.logins]]
        supervisor = supervisor_for(system.home)
        mcp = plan.service("mcp").name
        with_service: list[float] = []
        without: list[float] = []
        with httpx.Client(base_url=plan.lb_url, verify=verify, timeout=10) as http:
            logins(http, names, 10, expect_some=True)  # warm-up: pools, sessions
            for block in range(options.logins // BLOCK):
                chunk = names[block * BLOCK : (block + 1) * BLOCK]
                with_service += logins(http, chunk, BLOCK, expect_some=True)
                supervisor.stop(mcp)
                logins(http, chunk, 2, expect_some=False)  # the gateways notice it is down
                without += logins(http, chunk, BLOCK, expect_some=False)
                supervisor.start(mcp)
                wait_listing(http, names[0])
        print(f"\n3. logins through the LB ({len(with_service)} per mode, bcrypt 4 rounds)")
        print(f"   service running: {ms(with_service)}")
        print(f"   service stopped: {ms(without)}")
        added = statistics.median(with_service) - statistics.median(without)
        print(f"   recommendations add {added * 1000:.2f} ms to the median login")
    finally:
        system.destroy()


def fetch(creds: DatabaseCredentials, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with cursor(creds) as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def wait_listing(http: httpx.Client, name: str) -> None:
    """Until both gateway workers list recommendations again after a restart."""
    deadline = time.monotonic() + 60
    good = 0
    while good < 4:
        assert time.monotonic() < deadline, "recommendations did not come back"
        answer = http.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
        good = good + 1 if answer.json()["recommendedProducts"] else 0
        time.sleep(0.05)


if __name__ == "__main__":
    main()
