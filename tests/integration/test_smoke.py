import httpx


def test_gateway_starts_and_reports_health(backing):
    queues = backing.new_queues()
    url = backing.start_gateway("gw-smoke", queues)
    r = httpx.get(url + "/health")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "healthy"
    backing.stack.stop("gw-smoke")
