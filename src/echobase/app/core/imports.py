"""What a service process leaves out of its imports, decided before it imports anything else.

Every release installs rich (the CLI's dependency), and two optional paths import it with
pygments as soon as it is there: structlog's console renderer and the MCP SDK's logging
setup. The services write JSON lines and use neither, and those imports cost 5.4 MiB of
every service process (measured in a bare interpreter; issue 19's 1 GiB for all services).
"""

from __future__ import annotations

import sys

CONSOLE_LIBRARIES = ("rich",)


def leave_out_console_libraries() -> None:
    """A None in sys.modules makes ``import rich`` raise ImportError, which both optional
    paths handle by going without. Called first by each service's ``__main__``."""
    for name in CONSOLE_LIBRARIES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
