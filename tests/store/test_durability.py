"""`relay check` reports what survives a Redis restart (relay.store.durability), from a real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from relay.store.durability import Facts, assess
from tests.conftest import RedisServer, Relay

from .ha import SentinelCluster


def _levels(facts: Facts) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for level, text in assess(facts):
        out.setdefault(level, []).append(text)
    return out


def test_a_redis_that_keeps_nothing_on_disk_is_a_plain_warning() -> None:
    warnings = _levels(Facts(appendonly=False, appendfsync="everysec", save="", replicas=0, sentinel=None))[
        "warning"
    ]
    assert any("NONE" in w and "lost when Redis restarts" in w for w in warnings)


def test_rdb_only_aof_fsync_and_unknown_persistence_are_told_apart() -> None:
    rdb = _levels(Facts(False, "everysec", "3600 1", 0, None))["warning"]
    assert any("RDB snapshots only" in w for w in rdb)
    assert "warning" not in _levels(Facts(True, "everysec", "", 0, None))
    assert any("last second" in n for n in _levels(Facts(True, "everysec", "", 0, None))["note"])
    assert any("~30 s" in w for w in _levels(Facts(True, "no", "", 0, None))["warning"])
    assert any("unknown" in w for w in _levels(Facts(None, None, None, 0, None))["warning"])


def test_min_replicas_above_the_connected_replicas_warns_of_503s() -> None:
    assert any(
        "answers 503" in w for w in _levels(Facts(True, "always", "", 0, "relay", min_replicas=1))["warning"]
    )
    ok = _levels(Facts(True, "always", "", 1, "relay", min_replicas=1))
    assert "warning" not in ok and any("Sentinel, master 'relay', 1 replica" in line for line in ok["ok"])
    assert any("failover can lose" in n for n in _levels(Facts(True, "always", "", 1, None))["note"])


def _check(relay: Relay) -> subprocess.CompletedProcess[str]:
    # No gateway runs: `check` reports Redis, then exits 3 at the gateway probe.
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", "check"],
        env=relay.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("appendonly", [False, True])
def test_relay_check_flags_a_non_persistent_redis(tmp_path: Path, appendonly: bool) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=appendonly)
    server.start()
    try:
        result = _check(Relay(tmp_path / "relay", server.url))
    finally:
        server.stop()
    assert "redis ok" in result.stdout, result.stderr
    if appendonly:
        assert "redis persistence: appendonly yes, appendfsync everysec" in result.stdout
        assert "redis persistence" not in result.stderr
    else:
        assert "warning: redis persistence: NONE" in result.stderr
    assert "a single Redis URL (no Sentinel), 0 replica(s) connected" in result.stdout


def test_relay_check_through_sentinel_reports_the_master_and_its_replica(tmp_path: Path) -> None:
    cluster = SentinelCluster(tmp_path / "redis")
    try:
        cluster.start()
        relay = Relay(tmp_path / "relay", cluster.url, {"durability": {"min_replicas": 1}})
        result = _check(relay)
    finally:
        cluster.stop()
    assert "redis topology: Sentinel, master 'relay', 1 replica(s) connected" in result.stdout, result.stderr
    assert (
        "durability.min_replicas 1: an event is acknowledged only once that many replicas hold it"
        in result.stdout
    )
    assert "sentinels: 3 of 3 answer" in result.stdout


def test_sentinels_without_a_majority_are_a_warning() -> None:
    warnings = _levels(Facts(True, "always", "", 1, "relay", sentinels=(1, 3)))["warning"]
    assert any("1 of 3 answer; without a majority no failover can happen" in w for w in warnings)
    assert "warning" not in _levels(Facts(True, "always", "", 1, "relay", sentinels=(2, 3)))
