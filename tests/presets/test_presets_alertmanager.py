"""alertmanager: bearer / basic auth, one action per group notification, resolved handling, dedupe."""

from __future__ import annotations

import base64

import orjson
import pytest

import presets
from relay.config import Settings, SourceConfig
from relay.errors import BadRequest, Unauthorized
from relay.protocol.event import Event
from relay.protocol.fencing import GUIDE
from relay.protocol.pipeline import build_sources
from tests.paths import FIXTURES
from tests.presets.presets_support import run, source, verify

FIRING = (FIXTURES / "alertmanager" / "webhook_v4.firing.json").read_bytes()
RESOLVED = (FIXTURES / "alertmanager" / "webhook_v4.resolved.json").read_bytes()
TOKEN = "am-token"
# The headers Alertmanager 0.25 sent (webhook_v4.request_headers.txt) plus its http_config authorization.
HEADERS = {
    "User-Agent": "Alertmanager/0.25.0",
    "Content-Type": "application/json",
    "Authorization": f"Bearer {TOKEN}",
}
CFG = source("alertmanager", token=TOKEN)


def basic(user: str, password: str) -> dict[str, str]:
    return {**HEADERS, "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_firing_group_is_one_readable_action() -> None:
    result = run(CFG, HEADERS, FIRING)
    [action] = result.actions
    lines = action.message.splitlines()
    assert lines[0] == (
        "Alertmanager: FIRING — alertname=InstanceDown, job=node (2 firing), receiver relay-webhook"
    )
    # Annotations are fenced (relay.protocol.fencing): labels they are rendered from may come from targets.
    assert (
        "- [FIRING] critical InstanceDown on web-1:9100: "
        "<<<UNTRUSTED annotations.summary: Instance web-1:9100 down>>>"
    ) in lines
    assert (
        "- [FIRING] critical InstanceDown on web-2:9100: "
        "<<<UNTRUSTED annotations.summary: Instance web-2:9100 down>>>"
    ) in lines
    assert (
        "  <<<UNTRUSTED annotations.description: web-1:9100 of job node has been down for more "
        "than 5 minutes.>>>"
    ) in lines
    assert "  since 2026-11-26T00:25:42Z" in lines
    assert "  http://prometheus.example.com:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1" in lines
    assert lines[-3:] == ["Alertmanager: http://alertmanager.example.com:9093", "", GUIDE]
    assert action.name == "Alertmanager"
    assert action.session_key.startswith("hook:alertmanager:")


def test_resolved_notification_shares_the_group_session() -> None:
    firing = run(CFG, HEADERS, FIRING).actions[0]
    resolved = run(CFG, HEADERS, RESOLVED).actions[0]
    assert resolved.kind == "agent"
    assert resolved.session_key == firing.session_key
    assert "RESOLVED" in resolved.message and "resolved 2026-11-26T00:27:46Z" in resolved.message


def test_resolved_as_wake_or_dropped() -> None:
    [wake] = run(source("alertmanager", token=TOKEN, resolved="wake"), HEADERS, RESOLVED).actions
    assert wake.kind == "wake"
    assert wake.text.startswith("Alertmanager: RESOLVED — alertname=InstanceDown")
    # Firing notifications stay agent turns whatever `resolved` says.
    assert (
        run(source("alertmanager", token=TOKEN, resolved="wake"), HEADERS, FIRING).actions[0].kind == "agent"
    )
    dropped = run(source("alertmanager", token=TOKEN, resolved="drop"), HEADERS, RESOLVED)
    assert dropped.actions == [] and dropped.skipped == "resolved notification (resolved: drop)"
    assert run(source("alertmanager", token=TOKEN, resolved="drop"), HEADERS, FIRING).actions


def test_many_and_truncated_alerts_are_counted() -> None:
    payload = orjson.loads(FIRING)
    alert = payload["alerts"][0]
    payload["alerts"] = [{**alert, "fingerprint": f"{i:016x}"} for i in range(40)]
    payload["truncatedAlerts"] = 5
    body = orjson.dumps(payload)
    [action] = run(CFG, HEADERS, body).actions
    assert "(40 firing)" in action.message
    assert "… and 15 more alert(s) not listed" in action.message


def test_basic_auth() -> None:
    cfg = source("alertmanager", username="am", password="s3cret")
    run(cfg, basic("am", "s3cret"), FIRING)
    with pytest.raises(Unauthorized, match="invalid basic auth credentials"):
        verify(cfg, basic("am", "wrong"), FIRING)
    with pytest.raises(Unauthorized, match="invalid basic auth credentials"):
        verify(cfg, basic("someone", "s3cret"), FIRING)
    with pytest.raises(Unauthorized, match="missing basic auth credentials"):
        verify(cfg, {"Content-Type": "application/json"}, FIRING)
    with pytest.raises(Unauthorized, match="malformed basic auth credentials"):
        verify(cfg, {"Authorization": "Basic !!!"}, FIRING)
    # Both configured: either credential works.
    both = source("alertmanager", token=TOKEN, username="am", password="s3cret")
    verify(both, HEADERS, FIRING)
    verify(both, basic("am", "s3cret"), FIRING)


@pytest.mark.parametrize(
    ("hdrs", "message"),
    [
        ({**HEADERS, "Authorization": "Bearer wrong"}, "invalid bearer token"),
        ({"Content-Type": "application/json"}, "missing bearer token"),
        ({**HEADERS, "Authorization": "Basic " + base64.b64encode(b"a:b").decode()}, "missing bearer token"),
    ],
    ids=["wrong-token", "missing", "basic-when-only-token"],
)
def test_refusals(hdrs: dict[str, str], message: str) -> None:
    with pytest.raises(Unauthorized, match=message):
        verify(CFG, hdrs, FIRING)


def test_redelivery_has_the_same_delivery_id_and_a_new_notification_another() -> None:
    first = run(CFG, HEADERS, FIRING).delivery_id
    # Alertmanager re-sends the same notification after a 5xx; JSON key order or spacing may differ.
    resent = orjson.dumps(orjson.loads(FIRING), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    assert run(CFG, HEADERS, resent).delivery_id == first
    payload = orjson.loads(FIRING)
    payload["alerts"].reverse()
    assert run(CFG, HEADERS, orjson.dumps(payload)).delivery_id == first
    assert run(CFG, HEADERS, RESOLVED).delivery_id != first
    payload["alerts"][0]["startsAt"] = "2026-11-26T01:00:00Z"  # the alert fired again
    assert run(CFG, HEADERS, orjson.dumps(payload)).delivery_id != first


def test_not_an_alertmanager_body() -> None:
    with pytest.raises(BadRequest, match="no alerts list"):
        run(CFG, HEADERS, b'{"status": "firing"}')


def test_config_checks() -> None:
    assert presets.check_config(SourceConfig(preset="alertmanager"))[0] == "token"
    assert presets.check_config(SourceConfig(preset="alertmanager", username="am"))[0] == "token"
    assert presets.check_config(SourceConfig(preset="alertmanager", token="t", username="am")) == (
        "password",
        "basic auth needs both username and password",
    )


def test_build_sources_binds_the_resolved_option() -> None:
    settings = Settings(sources={"alerts": {"preset": "alertmanager", "token": TOKEN, "resolved": "wake"}})
    preset = build_sources(settings)["alerts"].preset
    action = preset.transform(Event(source="alerts", payload=orjson.loads(RESOLVED)))
    assert action.kind == "wake"
