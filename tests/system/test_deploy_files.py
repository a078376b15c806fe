"""docker-compose.yml and Dockerfile, checked without a Docker engine (none runs here)."""

from __future__ import annotations

import json

import jsonschema
import yaml

from tests.paths import ROOT


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests/fixtures/compose/compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator(schema).iter_errors(compose())]
    assert errors == []


def test_compose_runs_redis_with_aof_an_ingress_and_a_scalable_worker() -> None:
    services = compose()["services"]
    assert "--appendonly" in services["redis"]["command"] and "yes" in services["redis"]["command"]
    assert services["ingress"]["command"][:2] == ["relay", "serve"]
    worker = services["worker"]
    assert worker["command"] == ["relay", "worker"]
    assert "ports" not in worker and "container_name" not in worker  # so `--scale worker=N` works
    assert worker["deploy"]["replicas"] >= 1
    for name in ("ingress", "worker"):
        assert services[name]["environment"]["RELAY_REDIS_URL"] == "redis://redis:6379/0"


def test_dockerfile_runs_as_a_non_root_user_on_a_slim_image() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    assert lines[1].startswith("FROM python:3.11-slim")
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
