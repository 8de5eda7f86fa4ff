"""The durable secrets store: moto's Secrets Manager and KMS, kept across restarts.

moto keeps its state in memory only. This module runs moto's WSGI app behind a middleware
that appends every mutating request to an encrypted write-ahead journal (``DIR/journal``)
*before* moto applies it, and replays the journal into a fresh moto at startup, before the
port opens: any answer on the port means "replayed and ready".

Replay is deterministic because requests run one at a time under a single lock, and each
mutating request runs with moto's random source seeded from its journal entry (ids, ARN
suffixes, version ids) and with KMS key material derived from that source (see
``_patch_kms_key_material``), so ciphertexts made before a restart decrypt after it.

Run in the foreground; SIGTERM exits 0::

    python -m echobase.platform.durable.secrets_store --host 127.0.0.1 --port P --state-dir DIR
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import json
import logging
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any

from echobase.platform.aws_emulator import MotoIncompatible, keep_moto_lean
from echobase.platform.runtime.journal import Journal, JournalError

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

log = logging.getLogger(__name__)

KEY_FILE = "store.key"
JOURNAL_FILE = "journal"
# X-Amz-Target prefix -> the service name in the SigV4 credential scope. Nothing else is
# served: moto would accept, say, SQS calls too, and lose them on restart unannounced.
_SERVICES = {"secretsmanager": "secretsmanager", "TrentService": "kms"}
_READ_ONLY_PREFIXES = ("Get", "List", "Describe", "GenerateDataKey")
_READ_ONLY_ACTIONS = frozenset(
    {
        "BatchGetSecretValue",
        "Encrypt",
        "Decrypt",
        "ReEncrypt",
        "GenerateRandom",
        "Sign",
        "Verify",
        "GenerateMac",
        "VerifyMac",
        "ValidateResourcePolicy",
    }
)
# moto creates an AWS-managed key (random id and material) the first time any KMS call names
# a reserved alias such as alias/aws/secretsmanager, even a "read-only" Encrypt or
# DescribeKey. Such calls are journaled so the key comes back the same after a restart.
_RESERVED_ALIAS_MARK = b"alias/aws/"


def _patch_kms_key_material(material_key: bytes) -> None:
    """Make KMS key material a function of moto's (seeded) random source.

    moto draws it from os.urandom (moto.kms.utils.generate_master_key), so a replayed
    CreateKey would get new material and old ciphertexts would stop decrypting. The draw
    is passed through HMAC under a key from store.key, so the material stays unguessable
    even to someone who could predict moto's Mersenne Twister from the ids it hands out.
    Applied by ``open_store``, so only in the store's own process.
    """
    from moto.kms import models, utils
    from moto.moto_api._internal import mock_random

    def generate_master_key() -> bytes:
        draw = mock_random.getrandbits(256).to_bytes(32, "big")
        return hmac.digest(material_key, draw, hashlib.sha256)[: utils.MASTER_KEY_LEN]

    models.generate_master_key = generate_master_key  # type: ignore[attr-defined]
    utils.generate_master_key = generate_master_key


def _json_error(start_response: StartResponse, status: str, kind: str, message: str) -> list[bytes]:
    body = json.dumps({"__type": kind, "message": message}).encode()
    start_response(
        status,
        [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _is_mutating(target: str, body: bytes) -> bool:
    service, _, action = target.partition(".")
    if service == "TrentService" and _RESERVED_ALIAS_MARK in body:
        return True
    return not (action.startswith(_READ_ONLY_PREFIXES) or action in _READ_ONLY_ACTIONS)


def _credential_scope(authorization: str) -> str:
    """``AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request``: all moto reads
    (account from the key id, region, service); the signature is not worth keeping."""
    return authorization.split(",")[0]


class JournaledApp:
    """WSGI middleware: one request at a time; mutating ones journaled before moto sees them."""

    def __init__(self, journal: Journal, moto_app: WSGIApp) -> None:
        self.journal = journal
        self.moto_app = moto_app
        self.lock = threading.Lock()

    def replay(self) -> int:
        from werkzeug.test import EnvironBuilder

        entries = self.journal.read()
        with self.lock:
            for entry in entries:
                builder = EnvironBuilder(
                    path=entry["path"],
                    method=entry["method"],
                    query_string=entry["query"],
                    headers=entry["headers"],
                    data=base64.b64decode(entry["body"]),
                )
                self._apply(entry["seed"], builder.get_environ(), lambda *_args: None)
        return len(entries)

    def _apply(self, seed: int, environ: Environ, start_response: StartResponse) -> list[bytes]:
        from moto.moto_api._internal import mock_random

        mock_random.seed(seed)
        result = self.moto_app(environ, start_response)
        try:
            return [b"".join(result)]  # in full, under the lock: moto may work while iterated
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        with self.lock:
            return self._handle(environ, start_response)

    def _handle(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path.startswith("/moto-api") or path == "/favicon.ico":
            if method == "GET" and path == "/moto-api/":
                return self._apply_read(environ, start_response)  # the readiness probe
            # reset, seed, state, recorder...: would desynchronise memory from the journal,
            # and data.json would hand out every secret unauthenticated.
            return _json_error(
                start_response, "403 Forbidden", "AccessDeniedException", "not served here"
            )
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        service = _SERVICES.get(target.partition(".")[0])
        scope = _credential_scope(authorization).split("/")
        if service is None or len(scope) != 5 or scope[3] != service:
            return _json_error(
                start_response,
                "400 Bad Request",
                "UnknownOperationException",
                "this store serves signed Secrets Manager and KMS requests only",
            )
        body = self._read_body(environ)
        if not _is_mutating(target, body):
            return self._apply_read(environ, start_response)
        seed = secrets.randbits(128)
        entry = {
            "method": method,
            "path": path,
            "query": environ.get("QUERY_STRING", ""),
            "headers": {
                "Host": environ.get("HTTP_HOST", "localhost"),
                "Content-Type": environ.get("CONTENT_TYPE", ""),
                "X-Amz-Target": target,
                "Authorization": _credential_scope(authorization),
            },
            "body": base64.b64encode(body).decode(),
            "seed": seed,
        }
        try:
            self.journal.append([entry])
        except OSError as exc:
            log.error("journal append failed (%s); request refused", type(exc).__name__)
            return _json_error(
                start_response,
                "500 Internal Server Error",
                "InternalFailure",
                "secrets store could not persist the request",
            )
        return self._apply(seed, environ, start_response)

    def _apply_read(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        # Read-only calls draw from moto's random source too (GetRandomPassword): a fresh
        # seed keeps them from continuing a journaled seed's sequence, which would make
        # their output computable by anyone holding the journal and its key.
        return self._apply(secrets.randbits(128), environ, start_response)

    @staticmethod
    def _read_body(environ: Environ) -> bytes:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        stream = environ["wsgi.input"]
        if length > 0:
            body = stream.read(length)
        elif environ.get("wsgi.input_terminated"):
            body = stream.read()  # chunked: the server has de-chunked it
        else:
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return bytes(body)


def open_store(state_dir: Path) -> JournaledApp:
    """Load the key, patch moto, replay the journal; return the app, ready to serve."""
    journal = Journal(state_dir, "echobase secrets journal", JOURNAL_FILE, KEY_FILE)
    # Separate from the journal key's use: KMS key material is derived under this one.
    _patch_kms_key_material(hmac.digest(journal.key, b"echobase kms key material", hashlib.sha256))
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    app = JournaledApp(journal, DomainDispatcherApplication(create_backend_app))
    count = app.replay()
    log.info("replayed %d journal entries from %s", count, journal.path)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Durable Secrets Manager + KMS (moto).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    try:
        # Before the journal's replay: its requests are the first moto sees.
        keep_moto_lean()
        app = open_store(args.state_dir)
    except (JournalError, OSError, MotoIncompatible) as exc:
        sys.exit(f"secrets store: {exc}")

    def stop(_signum: int, _frame: FrameType | None) -> None:
        # Wait for the request in flight, then keep the lock: none starts during shutdown.
        app.lock.acquire(timeout=5)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import run_simple

    run_simple(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
