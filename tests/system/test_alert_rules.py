"""deploy/prometheus/relay-rules.yml: promtool's own checks and unit tests, and metric names that
exist in what GET /metrics serves (a renamed metric would otherwise silence an alert for good)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import redis
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from relay.metrics import RedisCollector, observe_latency
from relay.store import keys, pause
from tests.paths import ROOT

RULES = ROOT / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed (apt-get install prometheus; `make system-deps` does it)")
    return subprocess.run(["promtool", *args], cwd=RULES, capture_output=True, text=True, timeout=60)


def test_rules_are_valid() -> None:
    done = promtool("check", "rules", "relay-rules.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


def test_rules_unit_tests_pass() -> None:
    done = promtool("test", "rules", "relay-rules.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_unit_test() -> None:
    alerts = {
        r["alert"]
        for g in yaml.safe_load((RULES / "relay-rules.yml").read_text())["groups"]
        for r in g["rules"]
    }
    tests = yaml.safe_load((RULES / "relay-rules.test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case["exp_alerts"]}
    assert alerts == tested


def test_rules_use_only_metrics_and_labels_the_relay_serves(redis_client: redis.Redis) -> None:
    # Populate every family the rules read, then render /metrics as an ingress does.
    redis_client.hset(
        keys.STATS,
        mapping={
            "event|received|github": 4,
            "event|accepted|github": 3,
            "event|duplicate|github": 1,
            "refused|401|github": 1,
            "action|dead|agent": 1,
        },
    )
    pause.pause(redis_client, "gateway", "default", by="test")
    with redis_client.pipeline() as pipe:
        observe_latency(pipe, 31.0)
        observe_latency(pipe, 0.2)
        pipe.execute()
    registry = CollectorRegistry()
    registry.register(RedisCollector(redis_client, "relay-test"))
    served = generate_latest(registry).decode()
    samples = {line.split("{")[0].split(" ")[0] for line in served.splitlines() if not line.startswith("#")}
    assert 'relay_delivery_latency_seconds_bucket{le="30.0"}' in served  # the bound the p99 rule uses

    text = (RULES / "relay-rules.yml").read_text()
    exprs = " ".join(r["expr"] for g in yaml.safe_load(text)["groups"] for r in g["rules"])
    used = set(re.findall(r"\brelay_[a-z_]+\b", exprs))
    assert used and used <= samples, used - samples
    for label, value in re.findall(r'(\w+)=~?"([^"|]+)', exprs):
        if label != "le":
            assert f'{label}="{value}"' in served, (label, value)
