"""Secrets in the settings: `env:NAME` and `file:PATH` resolved, held as `SecretStr`, never printed.

A lenient load (every command but the serving processes) keeps a secret it cannot resolve as an
UnresolvedSecret, which fails only when it is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, SecretStr

from relay.errors import ConfigError

# While settings are loaded: whether an unresolvable secret fails the load (the serving processes)
# or is kept as an UnresolvedSecret (every other command), and the `.env` next to relay.yaml.
_LENIENT: ContextVar[bool] = ContextVar("relay_lenient_secrets", default=False)
_DOTENV: ContextVar[dict[str, str]] = ContextVar("relay_dotenv", default={})  # noqa: B039 - never mutated


class UnresolvedSecret(SecretStr):
    """A secret whose `env:`/`file:` source is missing, kept so that commands that never use it run.

    Using it raises ConfigError naming the key and the variable or file.
    """

    def __init__(self, reference: str, problem: str) -> None:
        super().__init__("")
        self.reference = reference
        self.problem = problem
        self.where = ""  # the key, set once the settings are built

    def get_secret_value(self) -> str:
        where = f"{self.where}: " if self.where else ""
        raise ConfigError(f"{where}{self.problem} (the configuration says {self.reference})")

    def _display(self) -> str:
        return "<unresolved>"


def resolve_secret(value: Any) -> Any:
    """`env:NAME` → that variable (else the `.env` beside relay.yaml), `file:PATH` → the file's
    content (trailing newline dropped)."""
    if isinstance(value, UnresolvedSecret):
        return value
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        return value
    try:
        return _resolve(value)
    except ValueError as exc:
        if _LENIENT.get():
            return UnresolvedSecret(value, str(exc))
        raise


def _resolve(value: str) -> str:
    if value.startswith("env:"):
        name = value[4:]
        if name in os.environ:
            return os.environ[name]
        if name in _DOTENV.get():
            return _DOTENV.get()[name]
        raise ValueError(f"environment variable {name} is not set")
    if value.startswith("file:"):
        path = Path(value[5:]).expanduser()
        try:
            return path.read_text().rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    return value


def read_dotenv(path: Path) -> dict[str, str]:
    """`NAME=value` lines (`#` comments, optional `export `, optional quotes), as `relay init` writes them."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def _not_empty(value: SecretStr) -> SecretStr:
    if not isinstance(value, UnresolvedSecret) and not value.get_secret_value():
        raise ValueError("secret is empty")
    return value


Secret = Annotated[SecretStr, BeforeValidator(resolve_secret), AfterValidator(_not_empty)]


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str | SecretStr) else value


SecretList = Annotated[list[Secret], BeforeValidator(_as_list)]


@contextmanager
def resolving(*, lenient: bool, dotenv: dict[str, str]) -> Iterator[None]:
    """While settings are built: whether an unresolvable secret fails, and the `.env` values."""
    lenient_token, dotenv_token = _LENIENT.set(lenient), _DOTENV.set(dotenv)
    try:
        yield
    finally:
        _LENIENT.reset(lenient_token)
        _DOTENV.reset(dotenv_token)


def _mark_unresolved(value: Any, where: str) -> None:
    """Give each UnresolvedSecret the key it sits at, for the error that names it when it is used."""
    if isinstance(value, UnresolvedSecret):
        value.where = where
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _mark_unresolved(getattr(value, name), f"{where}.{name}" if where else name)
    elif isinstance(value, dict):
        for name, item in value.items():
            _mark_unresolved(item, f"{where}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _mark_unresolved(item, f"{where}.{index}")


def unresolved_secrets(settings: BaseModel) -> list[UnresolvedSecret]:
    """The secrets a lenient load could not resolve (`relay check` lists them)."""
    found: list[UnresolvedSecret] = []

    def walk(value: Any) -> None:
        if isinstance(value, UnresolvedSecret):
            found.append(value)
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict | list):
            for item in value.values() if isinstance(value, dict) else value:
                walk(item)

    walk(settings)
    return found
