"""botocore's endpoint data, cut to the AWS services a process calls or serves.

``endpoints.json`` describes every AWS service: 6.7 MiB as Python objects in each process
that makes an SDK client or, like moto, lists a service's regions. Used by the services'
clients (``echobase.app.core.aws``) and by the AWS emulators (``echobase.platform``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botocore.loaders import Loader


class EndpointsOf(Loader):
    """botocore's loader, keeping the endpoint data of ``services`` only.

    Filtered where botocore caches it, the rest is freed for the process's own use (-6.5
    MiB once it allocates as much again; measured). The kept services' entries are
    untouched, partitions and defaults included, and the data still counts as botocore's
    own, so clients resolve AWS endpoints from the endpoint rule sets as before."""

    def __init__(self, services: Iterable[str]) -> None:
        super().__init__()
        self.services = frozenset(services)

    def load_data_with_path(self, name: str) -> Any:
        data, path = super().load_data_with_path(name)  # botocore caches this very tuple
        if name == "endpoints":
            for partition in data.get("partitions", []):
                kept = partition.get("services", {})
                for service in [s for s in kept if s not in self.services]:
                    del kept[service]
        return data, path
