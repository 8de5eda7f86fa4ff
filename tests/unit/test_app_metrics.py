"""The app's metrics: request metrics by route template, exemplars from sampled spans, the
multi-worker merge (prometheus_client's own files, plus the workers' exemplar files) and the
exposition format chosen from Accept."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.samples import Exemplar

from echobase.app.core import exemplars, exposition, metrics
from echobase.app.core.http_metrics import (
    DURATION_NAME,
    OTHER_METHOD,
    UNMATCHED,
    HttpMetricsMiddleware,
)
from tests_support import wait_until

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def requests_count(route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status": status}
    return REGISTRY.get_sample_value("echobase_http_requests_total", labels) or 0.0


def bucket_exemplars(text: str, metric: str) -> list[tuple[dict[str, str], Exemplar]]:
    return [
        (sample.labels, sample.exemplar)
        for family in text_string_to_metric_families(text)
        if family.name == metric
        for sample in family.samples
        if sample.exemplar is not None
    ]


class Traced:
    """What the OpenTelemetry instrumentation does outermost: one span per request."""

    def __init__(self, app: FastAPI, provider: TracerProvider) -> None:
        self.app, self.tracer = app, provider.get_tracer("test")
        self.trace_ids: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.tracer.start_as_current_span("request") as span:
            self.trace_ids.append(f"{span.get_span_context().trace_id:032x}")
            await self.app(scope, receive, send)


def api_app() -> FastAPI:
    """The gateway's shape: routers included under a prefix, the metrics middleware last."""
    app = FastAPI()
    orders = APIRouter(prefix="/orders")

    @orders.get("/{order_id}")
    def order(order_id: int) -> dict[str, int]:
        return {"id": order_id}

    @orders.post("")
    def place() -> dict[str, str]:
        return {}

    api = APIRouter(prefix="/api/v1")
    api.include_router(orders)
    app.include_router(api)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    app.add_route(metrics.METRICS_PATH, metrics.metrics, include_in_schema=False)
    app.add_middleware(HttpMetricsMiddleware)
    return app


def test_requests_are_counted_by_route_template_method_and_status():
    client = TestClient(api_app(), raise_server_exceptions=False)
    template = "/api/v1/orders/{order_id}"
    before = {
        key: requests_count(*key)
        for key in [
            (template, "GET", "200"),
            (template, "GET", "422"),
            ("/api/v1/orders", "GET", "405"),
            (UNMATCHED, "GET", "404"),
            ("/boom", "GET", "500"),
            (UNMATCHED, OTHER_METHOD, "404"),
        ]
    }
    assert client.get("/api/v1/orders/7").status_code == 200
    assert client.get("/api/v1/orders/8").status_code == 200
    assert client.get("/api/v1/orders/x").status_code == 422
    assert client.get("/api/v1/orders").status_code == 405  # a route, not this method
    assert client.get("/no/such/path/42").status_code == 404
    assert client.get("/boom").status_code == 500
    assert client.request("BREW", "/coffee").status_code == 404
    after = {key: requests_count(*key) for key in before}
    assert {key: after[key] - before[key] for key in before} == {
        (template, "GET", "200"): 2,
        (template, "GET", "422"): 1,
        ("/api/v1/orders", "GET", "405"): 1,
        (UNMATCHED, "GET", "404"): 1,
        ("/boom", "GET", "500"): 1,
        (UNMATCHED, OTHER_METHOD, "404"): 1,
    }
    # Never the raw path: no series per order id.
    assert (
        REGISTRY.get_sample_value(
            "echobase_http_requests_total",
            {"route": "/api/v1/orders/7", "method": "GET", "status": "200"},
        )
        is None
    )


def test_a_sampled_span_leaves_its_trace_id_as_the_bucket_exemplar_in_openmetrics():
    traced = Traced(api_app(), TracerProvider())
    client = TestClient(traced)
    assert client.get("/api/v1/orders/12345").status_code == 200
    trace_id = traced.trace_ids[-1]
    answer = client.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    found = bucket_exemplars(answer.text, DURATION_NAME)
    ours = [
        (labels, exemplar)
        for labels, exemplar in found
        if labels["route"] == "/api/v1/orders/{order_id}" and labels["method"] == "GET"
    ]
    assert {"trace_id": trace_id} in [exemplar.labels for _, exemplar in ours]
    assert len(trace_id) == 32 and int(trace_id, 16)
    # The text format carries no exemplars (and is what a plain scraper gets).
    plain = client.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain")
    assert "trace_id" not in plain.text and "echobase_http_requests_total" in plain.text


def test_an_unsampled_or_absent_span_gives_no_exemplar():
    assert exemplars.trace_exemplar() is None
    with TracerProvider(sampler=ALWAYS_OFF).get_tracer("t").start_as_current_span("x"):
        assert exemplars.trace_exemplar() is None
    with TracerProvider().get_tracer("t").start_as_current_span("x") as span:
        expected = f"{span.get_span_context().trace_id:032x}"
        assert exemplars.trace_exemplar() == {"trace_id": expected}


def test_observe_with_trace_keeps_the_exemplar_in_a_single_process():
    with TracerProvider().get_tracer("t").start_as_current_span("store") as span:
        metrics.observe_with_trace(metrics.ORDER_PROCESSING_SECONDS, 0.042)
        trace_id = f"{span.get_span_context().trace_id:032x}"
    text = openmetrics.generate_latest(REGISTRY).decode()
    found = bucket_exemplars(text, "echobase_order_processing_seconds")
    assert ({"le": "0.05"}, Exemplar({"trace_id": trace_id}, 0.042)) in [
        (labels, exemplar._replace(timestamp=None)) for labels, exemplar in found
    ]


def test_bucket_le_is_spelt_as_the_multiprocess_merge_spells_it():
    buckets = (0.005, 0.01, 0.5, 1, 10)
    assert exemplars.bucket_le(buckets, 0.0) == "0.005"
    assert exemplars.bucket_le(buckets, 0.005) == "0.005"
    assert exemplars.bucket_le(buckets, 0.2) == "0.5"
    assert exemplars.bucket_le(buckets, 1) == "1.0"
    assert exemplars.bucket_le(buckets, 11) == "+Inf"


def test_exemplar_files_round_trip_and_garbage_is_no_exemplar():
    key = exemplars.bucket_sample("h", {"route": "/a"}, (0.1, 1), 0.5)
    stored = {key: Exemplar({"trace_id": "ab" * 16}, 0.5, 1700000000.5)}
    assert exemplars.parse_file(exemplars.render_file(stored)) == stored
    assert exemplars.parse_file("{not json") == {}
    assert exemplars.parse_file('[{"sample": "x"}, 3]') == {}


def test_the_newest_exemplar_of_any_worker_wins():
    key = exemplars.sample_key("h_bucket", {"le": "1.0"})
    old = {key: Exemplar({"trace_id": "1" * 32}, 0.5, 100.0)}
    new = {key: Exemplar({"trace_id": "2" * 32}, 0.7, 200.0)}
    assert exemplars.newest(old, new) == new
    assert exemplars.newest(new, old) == new


def write_worker(directory: Path, pid: int, route: str, requests: int, seconds: float) -> None:
    """One worker's multiprocess files, as prometheus_client writes them."""
    counters = MmapedDict(str(directory / f"counter_{pid}.db"))
    key = mmap_key(
        "echobase_http_requests",
        "echobase_http_requests_total",
        ["route", "method", "status"],
        [route, "GET", "200"],
        "help",
    )
    counters.write_value(key, float(requests), 0.0)
    counters.close()
    histograms = MmapedDict(str(directory / f"histogram_{pid}.db"))
    for le, count in (("0.1", 0.0), ("1.0", float(requests)), ("+Inf", 0.0)):
        key = mmap_key(
            DURATION_NAME,
            f"{DURATION_NAME}_bucket",
            ["route", "method", "le"],
            [route, "GET", le],
            "help",
        )
        histograms.write_value(key, count, 0.0)
    for suffix, value in (("_sum", seconds * requests), ("_count", float(requests))):
        key = mmap_key(
            DURATION_NAME, DURATION_NAME + suffix, ["route", "method"], [route, "GET"], "help"
        )
        histograms.write_value(key, value, 0.0)
    histograms.close()


def test_the_merge_sums_every_worker_and_puts_their_exemplars_back(tmp_path):
    live, dead = os.getpid(), 999_999_999
    write_worker(tmp_path, live, "/health", 3, 0.5)
    write_worker(tmp_path, dead, "/health", 4, 0.5)
    store = exemplars.WorkerExemplars(tmp_path, pid=lambda: live)
    key = exemplars.bucket_sample(
        DURATION_NAME, {"route": "/health", "method": "GET"}, (0.1, 1), 0.5
    )
    store.record(key, {"trace_id": "c" * 32}, 0.5)
    store.flush()
    (tmp_path / f"exemplars_{dead}.json").write_text(
        exemplars.render_file({key: Exemplar({"trace_id": "d" * 32}, 0.5, 1.0)})
    )
    registry = CollectorRegistry()
    registry.register(exemplars.ExemplarMultiProcessCollector(tmp_path))
    text = openmetrics.generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    totals = {s.name: s.value for s in families["echobase_http_requests"].samples}
    assert totals["echobase_http_requests_total"] == 7  # both workers' counts, summed
    buckets = {s.labels["le"]: s for s in families[DURATION_NAME].samples if "le" in s.labels}
    assert buckets["1.0"].value == 7
    assert buckets["1.0"].exemplar.labels == {"trace_id": "c" * 32}
    assert buckets["0.1"].exemplar is None
    # The gone worker's exemplar file is removed; its counts stay in prometheus_client's.
    assert not (tmp_path / f"exemplars_{dead}.json").exists()
    assert (tmp_path / f"exemplars_{live}.json").exists()


def test_a_worker_writes_its_file_only_when_something_changed(tmp_path):
    store = exemplars.WorkerExemplars(tmp_path, pid=lambda: 4242)
    store.flush()
    assert not store.path.exists()
    key = exemplars.sample_key("h_bucket", {"le": "1.0"})
    store.record(key, {"trace_id": "e" * 32}, 0.9)
    store.flush()
    first = store.path.stat().st_mtime_ns
    assert json.loads(store.path.read_text())[0]["exemplar"] == {"trace_id": "e" * 32}
    store.flush()
    assert store.path.stat().st_mtime_ns == first
    assert [p.name for p in tmp_path.iterdir()] == ["exemplars_4242.json"]  # no partials


def test_a_worker_flushes_by_itself_in_the_background(tmp_path):
    store = exemplars.WorkerExemplars(tmp_path, interval=0.05)
    store.record(exemplars.sample_key("h_bucket", {"le": "1.0"}), {"trace_id": "f" * 32}, 1)
    wait_until(store.path.exists, 10, "the background flush")
    assert exemplars.read_workers(tmp_path)


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (PROMETHEUS_ACCEPT, OPENMETRICS),
        ("text/plain;version=0.0.4", "text/plain; version=0.0.4; charset=utf-8"),
        (None, "text/plain; version=0.0.4; charset=utf-8"),
    ],
)
def test_the_exposition_follows_accept(accept, content_type):
    answer = exposition.metrics_response(accept)
    assert answer.headers["content-type"].startswith(content_type.split(";")[0])
    if content_type == OPENMETRICS:
        assert answer.body.decode().endswith("# EOF\n")
