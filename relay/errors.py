"""One error hierarchy: every refusal carries its HTTP status and a message safe to show a sender."""

from __future__ import annotations


class RelayError(Exception):
    """Base of every error the ingress answers with `{"ok": false, "error": ...}`."""

    status_code = 500
    headers: dict[str, str] | None = None

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if headers is not None:
            self.headers = headers


class BadRequest(RelayError):
    status_code = 400


class Unauthorized(RelayError):
    status_code = 401


class NotFound(RelayError):
    status_code = 404


class RequestTimeout(RelayError):
    status_code = 408


class PayloadTooLarge(RelayError):
    status_code = 413


class UnsupportedMediaType(RelayError):
    status_code = 415


class TooManyRequests(RelayError):
    status_code = 429


class HeadersTooLarge(RelayError):
    status_code = 431


class Unavailable(RelayError):
    status_code = 503


class ConfigError(Exception):
    """The configuration is invalid; the message names the file, the key and what is wrong."""


class TransformError(Exception):
    """A transform raised, returned the wrong type or produced an invalid action."""
