"""The real Prometheus Alertmanager (the Debian package's binary) notifies the relay's `alertmanager`
source: two alerts of one group fire, then resolve; the gateway receives exactly one agent turn for
the firing and one for the resolution, each listing both alerts, in the group's session."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from tests.conftest import Relay, free_port, wait_until

AM_TOKEN = "live-alertmanager-token"
ALERTNAME = "RelayLiveDiskFull"
INSTANCES = ("db-1.example.internal:9100", "db-2.example.internal:9100")
BINARIES = ("prometheus-alertmanager", "alertmanager")  # Debian's name, upstream's name

# In the default suite (`make test` installs the binary): about 25 s, most of it Alertmanager's group timers.
pytestmark = [pytest.mark.timeout(180)]


class Alertmanager:
    """An Alertmanager process in its own process group, clustering off, notifying `webhook_url`."""

    def __init__(self, binary: str, workdir: Path, webhook_url: str, token: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "route": {
                "receiver": "relay",
                "group_by": ["alertname"],
                "group_wait": "1s",
                "group_interval": "2s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "relay",
                    "webhook_configs": [
                        {
                            "url": webhook_url,
                            "send_resolved": True,
                            "http_config": {"authorization": {"type": "Bearer", "credentials": token}},
                        }
                    ],
                }
            ],
        }
        self.config_path = workdir / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        (workdir / "data").mkdir(exist_ok=True)
        self.log = workdir / "alertmanager.log"
        self._fh = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        cmd = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]
        self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"alertmanager exited with {self.proc.returncode}:\n{self.output()}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        response = httpx.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=5)
        assert response.status_code == 200, response.text

    def metrics(self, prefix: str = "alertmanager_notification") -> dict[str, float]:
        """The webhook integration's notification counters, from /metrics."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        return {
            name: float(value)
            for name, _, value in (line.rpartition(" ") for line in text.splitlines())
            if name.startswith(prefix) and 'integration="webhook"' in name
        }

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._fh.close()


def _binary() -> str:
    for name in BINARIES:
        if path := shutil.which(name):
            return path
    pytest.fail("Alertmanager is not installed (apt-get install prometheus-alertmanager, or `make test`)")


@pytest.fixture
def relay(relay_factory: Callable[..., Relay]) -> Relay:
    # The override is merged into the default sources, so github and generic stay configured.
    r = relay_factory(sources={"alerts": {"preset": "alertmanager", "token": "env:ALERTMANAGER_TOKEN"}})
    r.env["ALERTMANAGER_TOKEN"] = AM_TOKEN
    r.start_stub()
    r.start_ingress()
    r.start_worker()
    return r


@pytest.fixture
def alertmanager(relay: Relay, tmp_path: Path) -> Iterator[Alertmanager]:
    am = Alertmanager(_binary(), tmp_path / "alertmanager", f"{relay.url}/hooks/alerts", AM_TOKEN)
    try:
        wait_until(am.ready, timeout=20, interval=0.1)
        yield am
    finally:
        am.stop()


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _alerts(starts: datetime, ends: datetime | None = None) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = []
    for instance in INSTANCES:
        alert: dict[str, Any] = {
            "labels": {"alertname": ALERTNAME, "severity": "critical", "instance": instance},
            "annotations": {"summary": f"disk almost full on {instance}"},
            "startsAt": _iso(starts),
            "generatorURL": "http://prometheus.example.internal:9090/graph",
        }
        if ends is not None:
            alert["endsAt"] = _iso(ends)
        alerts.append(alert)
    return alerts


def _turns(relay: Relay, status: str) -> list[dict[str, Any]]:
    assert relay.stub is not None
    return [
        run["body"]
        for run in relay.stub.runs()
        if run["body"].get("name") == "Alertmanager"
        and ALERTNAME in run["body"].get("message", "")
        and run["body"]["message"].startswith(f"Alertmanager: {status} ")
    ]


def _events(relay: Relay) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "relay.cli", "events", "--json", "-n", "100"],
        env=relay.env,
        capture_output=True,
        check=True,
        timeout=30,
    )
    return [orjson.loads(line) for line in out.stdout.splitlines() if line.strip()]


def _check_turn(turn: dict[str, Any], status: str) -> None:
    message = turn["message"]
    assert message.startswith(f"Alertmanager: {status} — alertname={ALERTNAME} (2 {status.lower()})"), message
    assert "receiver relay" in message.splitlines()[0], message
    for instance in INSTANCES:
        assert f"[{status}] critical {ALERTNAME} on {instance}" in message, message
        assert f"disk almost full on {instance}" in message, message
    assert turn["sessionKey"].startswith("hook:alertmanager:")


def test_real_alertmanager_fires_and_resolves_through_the_relay(
    relay: Relay, alertmanager: Alertmanager
) -> None:
    started = time.monotonic()
    # Starting now: Alertmanager flushes a new group at once when an alert's startsAt is older than
    # group_wait, which would race the group's second alert into the next notification.
    starts = datetime.now(UTC)
    alertmanager.post_alerts(_alerts(starts))  # firing: no endsAt (Alertmanager applies resolve_timeout)
    firing = wait_until(lambda: _turns(relay, "FIRING"), timeout=30, interval=0.1)
    fired_after = time.monotonic() - started

    resolve_at = time.monotonic()
    alertmanager.post_alerts(_alerts(starts, ends=datetime.now(UTC)))  # ended: resolved
    resolved = wait_until(lambda: _turns(relay, "RESOLVED"), timeout=30, interval=0.1)
    resolved_after = time.monotonic() - resolve_at

    # Several more group_intervals: nothing else may arrive (no repeat, re-sends deduplicated).
    time.sleep(6)
    firing, resolved = _turns(relay, "FIRING"), _turns(relay, "RESOLVED")
    assert len(firing) == 1, firing
    assert len(resolved) == 1, resolved
    _check_turn(firing[0], "FIRING")
    _check_turn(resolved[0], "RESOLVED")
    assert "resolved " in resolved[0]["message"]  # each alert's endsAt is shown once resolved
    assert firing[0]["sessionKey"] == resolved[0]["sessionKey"]  # the resolution lands in the alert's session
    assert relay.stub is not None
    assert len(relay.stub.runs()) == 2, relay.stub.runs()

    alerts_events = [e for e in _events(relay) if e["source"] == "alerts"]
    assert len(alerts_events) == 2, alerts_events
    assert all(e["delivery_id"].startswith("am:") for e in alerts_events), alerts_events
    assert len({e["delivery_id"] for e in alerts_events}) == 2, alerts_events
    for event in alerts_events:
        assert [(a["kind"], a.get("state")) for a in event["actions"]] == [("agent", "delivered")], event

    # Alertmanager saw every notification accepted: none failed for good.
    metrics = alertmanager.metrics()
    assert metrics.get('alertmanager_notifications_failed_total{integration="webhook"}') == 0, metrics
    print(f"firing turn after {fired_after:.1f}s, resolved turn after {resolved_after:.1f}s; {metrics}")
    print(firing[0]["message"], resolved[0]["message"], alertmanager.output(), sep="\n---\n")
