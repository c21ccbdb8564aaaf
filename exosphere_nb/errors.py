"""One error hierarchy, raised alike by the embedded and the HTTP clients.

ExosphereError
├── BadRequestError            (HTTP 400: the request cannot be applied as given)
│   ├── GraphValidationError   (a graph template is malformed or INVALID; .errors lists every problem)
│   ├── PlaceholderError       (a ${{ ... }} placeholder does not parse)
│   ├── NodeValidationError    (node classes refused when a Runtime is built)
│   └── StateTransitionError   (a state is not in a status that allows the call)
├── NotFoundError              (HTTP 404: unknown graph, state, run or namespace)
├── ConflictError              (HTTP 409: e.g. a manual-retry fanout_id reused)
├── AuthError                  (HTTP 401: missing or wrong API key)
├── DatabaseLockedError        (another process holds the DuckDB file)
├── TransportError             (the state manager could not be reached)
└── ServerError                (the state manager failed: HTTP 5xx)
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AuthError",
    "BadRequestError",
    "ConflictError",
    "DatabaseLockedError",
    "ExosphereError",
    "GraphValidationError",
    "NodeValidationError",
    "NotFoundError",
    "PlaceholderError",
    "ServerError",
    "StateTransitionError",
    "TransportError",
]


class ExosphereError(Exception):
    """Base of every error this package raises on purpose."""

    status_code: int = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequestError(ExosphereError, ValueError):
    status_code = 400


class _ListedError(BadRequestError):
    """An error that gathers several problems, each reported on its own line."""

    headline = "invalid"

    def __init__(self, errors: Sequence[str] | str, headline: str | None = None) -> None:
        self.errors: list[str] = [errors] if isinstance(errors, str) else list(errors)
        head = headline or self.headline
        if len(self.errors) == 1:
            detail = f"{head}: {self.errors[0]}"
        else:
            detail = f"{head} ({len(self.errors)} problems):\n" + "\n".join(f"- {e}" for e in self.errors)
        super().__init__(detail)


class GraphValidationError(_ListedError):
    headline = "graph is invalid"


class NodeValidationError(_ListedError):
    headline = "node classes are invalid"


class PlaceholderError(BadRequestError):
    pass


class StateTransitionError(BadRequestError):
    pass


class NotFoundError(ExosphereError, LookupError):
    status_code = 404


class ConflictError(ExosphereError):
    status_code = 409


class AuthError(ExosphereError):
    status_code = 401


class DatabaseLockedError(ExosphereError):
    status_code = 503


class TransportError(ExosphereError, ConnectionError):
    status_code = 503


class ServerError(ExosphereError):
    status_code = 500
