"""Every setting can be set from the environment (README, "Configuration"), lists plainly or as JSON."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from relay.config import Settings, load_settings

# One value per field of the settings model, as a container deployment would set it, and what it
# must become. A field added to Settings without a line here fails the test.
ENVIRONMENT: dict[str, tuple[dict[str, str], Any]] = {
    "redis_url": ({"RELAY_REDIS_URL": "redis://redis:6379/2"}, "redis://redis:6379/2"),
    "data_dir": ({"RELAY_DATA_DIR": "/var/lib/relay"}, Path("/var/lib/relay")),
    "queue": ({"RELAY_QUEUE": "relay-eu"}, "relay-eu"),
    "host": ({"RELAY_HOST": "0.0.0.0"}, "0.0.0.0"),
    "port": ({"RELAY_PORT": "9090"}, 9090),
    "ingress_token": ({"RELAY_INGRESS_TOKEN": "itok, itok2"}, ["itok", "itok2"]),
    "gateway": ({"RELAY_GATEWAY_URL": "http://gw:18789", "RELAY_GATEWAY_TOKEN": "gtok"}, "http://gw:18789"),
    "gateways": ({"RELAY_GATEWAYS": '{"eu": {"url": "http://eu:18789", "token": "eutok"}}'}, ["eu"]),
    "delivery": ({"RELAY_DELIVERY_IN_FLIGHT": "4", "RELAY_DELIVERY_MAX_ATTEMPTS": "7"}, (4, 7)),
    "console": ({"RELAY_CONSOLE_ENABLED": "true", "RELAY_CONSOLE_TOKEN": "c" * 16}, True),
    "sources": ({"RELAY_SOURCES": '{"ci": {"preset": "generic", "token": "ci-token"}}'}, ["ci"]),
    "mappings": ({"RELAY_MAPPINGS": '[{"match": {"path": "ci"}, "action": "wake", "textTemplate": "x"}]'}, 1),
    "schedules": ({"RELAY_SCHEDULES": '{"daily": {"cron": "0 9 * * *", "message": "Standup"}}'}, ["daily"]),
    "event_ttl_seconds": ({"RELAY_EVENT_TTL_SECONDS": "3600"}, 3600),
    "dedupe_ttl_seconds": ({"RELAY_DEDUPE_TTL_SECONDS": "7200"}, 7200),
    "body_timeout_seconds": ({"RELAY_BODY_TIMEOUT_SECONDS": "2.5"}, 2.5),
    "max_headers": ({"RELAY_MAX_HEADERS": "50"}, 50),
    "auth_failures_max": ({"RELAY_AUTH_FAILURES_MAX": "5"}, 5),
    "auth_failures_window_seconds": ({"RELAY_AUTH_FAILURES_WINDOW_SECONDS": "30"}, 30),
    "transform_timeout_seconds": ({"RELAY_TRANSFORM_TIMEOUT_SECONDS": "0.5"}, 0.5),
    "transform_max_threads": ({"RELAY_TRANSFORM_MAX_THREADS": "3"}, 3),
    "max_message_bytes": ({"RELAY_MAX_MESSAGE_BYTES": "4096"}, 4096),
    "events_max": ({"RELAY_EVENTS_MAX": "1000"}, 1000),
    "trusted_proxies": ({"RELAY_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"}, ["10.0.0.0/8", "127.0.0.1"]),
    "metrics": ({"RELAY_METRICS_HOST": "0.0.0.0", "RELAY_METRICS_PORT": "9500"}, ("0.0.0.0", 9500)),
    "durability": (
        {"RELAY_DURABILITY_MIN_REPLICAS": "1", "RELAY_DURABILITY_REPLICA_TIMEOUT_MS": "250"},
        (1, 250),
    ),
    "redis_password": ({"RELAY_REDIS_PASSWORD": "rpass"}, "rpass"),
    "redis_sentinel_password": ({"RELAY_REDIS_SENTINEL_PASSWORD": "spass"}, "spass"),
}


def observed(settings: Settings, field: str) -> Any:
    value = getattr(settings, field)
    if field == "ingress_token":
        return [t.get_secret_value() for t in value]
    if field == "gateway":
        assert value.token.get_secret_value() == "gtok"
        return value.url
    if field in ("gateways", "sources", "schedules"):
        return sorted(value)
    if field == "delivery":
        return value.in_flight, value.max_attempts
    if field == "console":
        return value.enabled
    if field == "mappings":
        return len(value)
    if field == "metrics":
        return value.host, value.port
    if field == "durability":
        return value.min_replicas, value.replica_timeout_ms
    if field in ("redis_password", "redis_sentinel_password"):
        return value.get_secret_value()
    return value


def test_the_table_covers_every_field_of_the_settings_model() -> None:
    assert set(ENVIRONMENT) == set(Settings.model_fields) - {"config_path"}  # config_path: RELAY_CONFIG


@pytest.mark.parametrize("field", sorted(ENVIRONMENT))
def test_every_setting_from_the_environment(
    field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "relay.yaml"
    config.write_text("gateway: {url: 'http://yaml:1'}\n")
    variables, expected = ENVIRONMENT[field]
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert observed(load_settings(config), field) == expected


def test_a_list_as_json_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_INGRESS_TOKEN", '["a,b", "c"]')  # JSON keeps a comma inside a value
    (tmp_path / "relay.yaml").write_text("{}\n")
    settings = load_settings(tmp_path / "relay.yaml")
    assert [t.get_secret_value() for t in settings.ingress_token] == ["a,b", "c"]


def _check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "relay.yaml").write_text("sources: {}\n")
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", "check", "--offline"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_plain_list_from_the_environment_in_a_real_command(tmp_path: Path) -> None:
    done = _check(tmp_path, RELAY_INGRESS_TOKEN="itok")
    assert done.returncode == 0 and "config ok" in done.stdout, done.stderr


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("RELAY_PORT", "eighty", "port: "),
        ("RELAY_SOURCES", "{not json", "RELAY_SOURCES: not valid JSON"),
        ("RELAY_DELIVERY_IN_FLIGHT", "0", "delivery.in_flight: "),
    ],
)
def test_a_bad_value_is_named_with_exit_2_and_no_traceback(
    tmp_path: Path, variable: str, value: str, said: str
) -> None:
    done = _check(tmp_path, **{variable: value})
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr
    assert variable in done.stderr  # where the bad value came from
    assert len(done.stderr.strip().splitlines()) <= 2
