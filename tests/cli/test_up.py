"""`relay up`: ingress + worker + the embedded Redis (AOF on), as the README's run command starts it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
import redis
import yaml

from relay.store.embedded import start_embedded
from tests.conftest import (
    GITHUB_SECRET,
    HOOKS_TOKEN,
    STUB_ALLOWING,
    Proc,
    free_port,
    github_fixture,
    sign,
    wait_until,
)


def test_embedded_redis_runs_with_aof(tmp_path: Path) -> None:
    url, server = start_embedded(tmp_path / "data")
    try:
        client = redis.Redis.from_url(url)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "everysec"
        assert Path(client.config_get("dir")["dir"]) == (tmp_path / "data").resolve()
    finally:
        server.shutdown()


def test_relay_up_delivers_a_signed_push_through_the_embedded_redis(tmp_path: Path) -> None:
    stub_port, port = free_port(), free_port()
    env = _up_env(tmp_path, stub_port)
    stub = Proc(
        ["gateway-stub", "--port", str(stub_port), "--token", HOOKS_TOKEN, *STUB_ALLOWING],
        env,
        tmp_path / "stub.log",
    )
    up = Proc(["up", "--port", str(port)], env, tmp_path / "up.log")
    try:
        _wait_ready(up, f"http://127.0.0.1:{port}/readyz?workers=1")
        body = github_fixture("push.default")
        started = time.monotonic()
        answer = httpx.post(
            f"http://127.0.0.1:{port}/hooks/github",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": "up-1",
                "X-Hub-Signature-256": sign(body),
            },
        )
        assert answer.status_code == 202, answer.text
        runs = wait_until(
            lambda: [
                r
                for r in httpx.get(f"http://127.0.0.1:{stub_port}/_stub/requests").json()
                if r["path"] == "agent" and r["status"] == 200
            ],
            timeout=10,
        )
        print(f"sender to gateway: {(time.monotonic() - started) * 1000:.0f} ms")
        assert runs[0]["key"].startswith("act_")
        assert (tmp_path / "data" / "appendonly.aof").exists() or any((tmp_path / "data").glob("appendonly*"))
        socket_url = (tmp_path / "data" / "redis.url").read_text().strip()  # where other commands find it
        assert socket_url.startswith("unix://")
        assert "redis persistence: appendonly yes, appendfsync everysec" in up.output()  # the banner
        assert redis.Redis.from_url(socket_url).ping()
        up.proc.send_signal(signal.SIGINT)  # Ctrl-C: ingress, worker and embedded Redis all stop
        up.wait(timeout=60)
        wait_until(lambda: not _answers(socket_url), timeout=10)  # the embedded Redis exits after it
        with pytest.raises(redis.exceptions.ConnectionError):
            redis.Redis.from_url(socket_url).ping()
    finally:
        up.stop()
        stub.stop()


def _answers(redis_url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(redis_url).ping())
    except redis.exceptions.ConnectionError:
        return False


def _up_env(tmp_path: Path, gateway_port: int) -> dict[str, str]:
    """The environment of a `relay up` with a relay.yaml of one GitHub source and no redis_url."""
    config = tmp_path / "relay.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "gateway": {"url": f"http://127.0.0.1:{gateway_port}", "token": "env:OPENCLAW_HOOKS_TOKEN"},
                "sources": {"github": {"preset": "github", "secret": "env:GITHUB_WEBHOOK_SECRET"}},
            }
        )
    )
    return {
        "PATH": "/usr/bin:/bin",
        "RELAY_CONFIG": str(config),
        "OPENCLAW_HOOKS_TOKEN": HOOKS_TOKEN,
        "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
        "PYTHONUNBUFFERED": "1",
    }


def _wait_ready(up: Proc, url: str) -> None:
    """Wait until `relay up` reports ready; if it does not, every process of its group writes its
    threads' stacks to the log (SIGUSR1), and the failure shows the log."""
    try:
        wait_until(lambda: _ok(url), timeout=30)
    except AssertionError:
        os.killpg(up.proc.pid, signal.SIGUSR1)
        time.sleep(0.5)  # faulthandler writes synchronously; give it a moment to reach the file
        pytest.fail(f"relay up not ready within 30 s:\n{up.output()[-6000:]}")


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _group(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes in process group `pgid`."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_sigterm_to_relay_up_alone_stops_its_worker_and_embedded_redis(tmp_path: Path) -> None:
    """systemd, `docker stop` and process managers send SIGTERM to the main process only."""
    port = free_port()
    env = _up_env(tmp_path, free_port())
    up = Proc(["up", "--port", str(port), "--workers", "2"], env, tmp_path / "up.log")
    try:
        _wait_ready(up, f"http://127.0.0.1:{port}/readyz?workers=2")
        url_file = tmp_path / "data" / "redis.url"
        client = redis.Redis.from_url(url_file.read_text().strip())
        redis_pid = int(client.info("server")["process_id"])
        client.set("written-before-stop", "1")
        client.close()
        workers = [pid for pid in _group(up.proc.pid) if pid != up.proc.pid]
        assert len(workers) == 2, up.output()
        up.proc.send_signal(signal.SIGTERM)
        assert up.wait(timeout=45) == 0, up.output()
        assert _group(up.proc.pid) == [], "a process of relay up's group outlived it"
        last = up.output().strip().splitlines()[-1]
        assert last == (
            "relay stopped: workers finished their deliveries; embedded Redis shut down (AOF fsynced)"
        )
        wait_until(lambda: _gone(redis_pid), timeout=5)  # the daemonized server, outside the group
        assert not url_file.exists()  # commands now say `relay up` is not running
        assert b"written-before-stop" in b"".join(
            p.read_bytes() for p in (tmp_path / "data").rglob("appendonly*") if p.is_file()
        )
    finally:
        up.kill()


def test_a_worker_that_exits_is_started_again(tmp_path: Path) -> None:
    """A rolling restart of one worker (or its crash) must not leave `relay up` without one."""
    port = free_port()
    up = Proc(["up", "--port", str(port)], _up_env(tmp_path, free_port()), tmp_path / "up.log")
    try:
        _wait_ready(up, f"http://127.0.0.1:{port}/readyz?workers=1")
        (worker,) = [pid for pid in _group(up.proc.pid) if pid != up.proc.pid]
        os.kill(worker, signal.SIGTERM)
        wait_until(lambda: not Path(f"/proc/{worker}").exists(), timeout=30)  # exited and reaped
        wait_until(lambda: [pid for pid in _group(up.proc.pid) if pid != up.proc.pid], timeout=30)
        _wait_ready(up, f"http://127.0.0.1:{port}/readyz?workers=1")
        assert f"worker 0 (pid {worker}) exited with code 0" in up.output()
        up.proc.send_signal(signal.SIGTERM)
        assert up.wait(timeout=45) == 0, up.output()
        assert _group(up.proc.pid) == []
    finally:
        up.kill()
