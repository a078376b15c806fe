"""Loading the settings: relay.yaml, then the environment, validated, with errors that name file and key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import SettingsError

from relay.config.secrets import _mark_unresolved, read_dotenv, resolving
from relay.config.settings import Settings
from relay.errors import ConfigError

DEFAULT_CONFIG = "relay.yaml"


def _format_errors(exc: ValidationError, where: str) -> str:
    lines = [f"{where}: invalid configuration"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {key}: {msg}{_from_environment(err['loc'])}")
    return "\n".join(lines)


def _from_environment(loc: tuple[Any, ...]) -> str:
    """` (from RELAY_X)` when the invalid value came from the environment."""
    for depth in (2, 1):
        name = "RELAY_" + "_".join(str(p) for p in loc[:depth]).upper()
        if len(loc) >= depth and name in os.environ:
            return f" (from {name})"
    return ""


def load_settings(
    path: str | Path | None = None, *, lenient_secrets: bool = False, **overrides: Any
) -> Settings:
    """Read relay.yaml (if it exists), apply the environment, validate; raise ConfigError naming file and key.

    `env:NAME` secrets are looked up in the environment, then in a `.env` file beside relay.yaml.
    With lenient_secrets, a secret that cannot be resolved is kept as an UnresolvedSecret that
    fails only when used: commands resolve only the secrets they need.
    """
    explicit = path or os.environ.get("RELAY_CONFIG")
    config_path = Path(explicit or DEFAULT_CONFIG)
    data: dict[str, Any] = {}
    if config_path.exists():
        try:
            loaded = yaml.safe_load(config_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_path}: not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config_path}: the top level must be a mapping")
        data = loaded
    elif explicit:
        raise ConfigError(f"{config_path}: no such file")
    data.update(overrides)
    dotenv_path = config_path.parent / ".env"
    try:
        dotenv = read_dotenv(dotenv_path) if dotenv_path.is_file() else {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{dotenv_path}: cannot read: {exc}") from None
    try:
        with resolving(lenient=lenient_secrets, dotenv=dotenv):
            settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(config_path))) from None
    except SettingsError as exc:  # a RELAY_* variable that is not valid JSON where JSON is needed
        raise ConfigError(f"environment: {_settings_error(exc)}") from None
    settings.config_path = config_path.resolve() if config_path.exists() else None
    _mark_unresolved(settings, "")
    return settings


def _settings_error(exc: SettingsError) -> str:
    # pydantic-settings: 'error parsing value for field "x" from source "EnvSettingsSource"'
    text = str(exc)
    field = text.split('"')[1] if text.count('"') >= 2 else ""
    cause = exc.__cause__
    return f"RELAY_{field.upper()}: {cause or text}" if field else text
