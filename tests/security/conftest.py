"""The attack suite's deployed system, shared by its modules; modules that only need a gateway
use the suite's ``gateway_factory`` instead."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from security.live_support import LiveSystem, create_live_system


@pytest.fixture(scope="package")
def live() -> Iterator[LiveSystem]:
    live = create_live_system()
    try:
        yield live
    finally:
        live.system.destroy()
