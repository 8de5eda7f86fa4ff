"""Every error the gateway answers with, as JSON that never carries internals."""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from echobase.app.core.database import is_outage

log = structlog.get_logger()


class ApiError(Exception):
    def __init__(
        self, status: int, error: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.headers = status, error, message, headers


def unavailable(message: str = "A required service is unavailable; please retry") -> ApiError:
    return ApiError(503, "Service Unavailable", message, {"Retry-After": "5"})


# Messages per field: the rule, never the value that was sent.
FIELD_RULES = {
    "username": "Username must be 3-50 characters: letters, numbers and underscores",
    "email": "Email must be a valid address",
    "fullName": "Full name must be 1-255 characters: letters, numbers, spaces, - ' .",
    "password": (
        "Password must be at least 8 characters with an uppercase letter, "
        "a lowercase letter and a number"
    ),
    "productId": "Product ID must be a positive integer",
    "quantity": "Quantity must be an integer from 1 to 10000",
    "limit": "limit must be an integer",
    "offset": "offset must be a non-negative integer",
}
FIELD_LABELS = {
    "username": "Username",
    "password": "Password",
    "email": "Email",
    "fullName": "Full name",
    "productId": "Product ID",
    "quantity": "Quantity",
}


def validation_details(exc: RequestValidationError) -> list[dict[str, str]] | None:
    """express-validator shaped details, one per failing field; None for unreadable JSON."""
    details: dict[str, dict[str, str]] = {}
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            return None
        loc = [str(part) for part in error.get("loc", ())]
        location = loc[0] if loc else "body"
        path = loc[1] if len(loc) > 1 else ""
        if path in details:
            continue
        value = error.get("input")
        if not path:
            msg = "Request body must be a JSON object"
        elif error.get("type") == "missing" or value in ("", None):
            msg = f"{FIELD_LABELS.get(path, path)} is required"
        else:
            msg = FIELD_RULES.get(path, "Invalid value")
        details[path] = {"type": "field", "path": path, "msg": msg, "location": location}
    return list(details.values())


def error_body(error: str, message: str) -> dict[str, str]:
    return {"error": error, "message": message}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.error, exc.message), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = validation_details(exc)
        if details is None:
            return JSONResponse(error_body("Invalid JSON", "Request body is not valid JSON"), 400)
        return JSONResponse({"error": "Validation failed", "details": details}, 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "Not Found", 405: "Method Not Allowed"}
        error = names.get(exc.status_code, "Error")
        message = "Resource not found" if exc.status_code == 404 else error
        return JSONResponse(error_body(error, message), exc.status_code, headers=exc.headers)

    @app.exception_handler(SQLAlchemyError)
    async def database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        if is_outage(exc):
            log.warning("database unavailable", path=request.url.path, error=type(exc).__name__)
            err = unavailable()
            return JSONResponse(error_body(err.error, err.message), 503, headers=err.headers)
        return await unexpected_error(request, exc)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", path=request.url.path, exc_info=exc)
        return JSONResponse(
            error_body("Internal Server Error", "An unexpected error occurred"), 500
        )
