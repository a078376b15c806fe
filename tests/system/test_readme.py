"""The README's first ten minutes, run as written: its Quick start (with Try it) against a `make run`
in a fresh copy, from terminals with nothing exported; and every `relay <command>` it and the pages of docs/
name exists (the command reference is docs/development.md)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import httpx

from relay.cli.main import cli
from tests.conftest import free_port, wait_until
from tests.paths import ROOT

README = ROOT / "README.md"
DOC_PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]


def section(text: str, title: str) -> str:
    """The text of `## title`, its `###` subsections included, up to the next `## `."""
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```(?:sh|bash|shell)\n(.*?)^```", text, re.S | re.M)


def dev_secrets() -> str:
    """The .env `make run` writes: the Makefile's DEV_SECRETS, one NAME=value a line."""
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    found = re.search(r"^DEV_SECRETS := (.*)$", makefile, re.M)
    assert found, "no DEV_SECRETS in the Makefile"
    return "".join(f"{item}\n" for item in found.group(1).split())


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_quick_start_runs_as_written(tmp_path: Path) -> None:
    blocks = shell_blocks(section(README.read_text(), "Quick start"))
    assert blocks, "no shell blocks in the README's Quick start"
    copy = tmp_path / "clone"  # a fresh copy: the files the commands read, the venv linked in
    copy.mkdir()
    for name in ("README.md", "Makefile", "relay.yaml"):
        shutil.copy(ROOT / name, copy / name)
    shutil.copytree(ROOT / "transforms", copy / "transforms")
    shutil.copytree(ROOT / "tests" / "fixtures", copy / "tests" / "fixtures")
    (copy / ".venv").symlink_to(Path(sys.prefix))
    # The README's fixed ports and file, moved out of other processes' way.
    port, stub_port, record = free_port(), free_port(), tmp_path / "gateway.jsonl"
    config = copy / "relay.yaml"
    config.write_text(config.read_text().replace("127.0.0.1:18789", f"127.0.0.1:{stub_port}"))

    def adapt(script: str) -> str:
        script = script.replace("localhost:8080", f"localhost:{port}").replace(
            "/tmp/gateway.jsonl", str(record)
        )
        return script.replace("relay gateway-stub", f"relay gateway-stub --port {stub_port}")

    # A second terminal: nothing exported, no RELAY_* variable, a PATH with the usual tools.
    bare = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    background: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []
    try:
        for block in blocks:
            lines = [line for line in block.splitlines() if line.strip()]
            if lines[0].startswith("make "):
                for line in lines:
                    target = line.split("#")[0].split()[1]
                    if target == "run":  # `relay up`, after writing the .env of dev secrets as make does
                        (copy / ".env").write_text(dev_secrets())
                        env = {**bare, "RELAY_PORT": str(port), "PYTHONUNBUFFERED": "1"}
                        logs.append((tmp_path / "run.log").open("wb"))
                        background.append(
                            subprocess.Popen(
                                [".venv/bin/relay", "up"],
                                cwd=copy,
                                env=env,
                                stdout=logs[-1],
                                stderr=subprocess.STDOUT,
                                start_new_session=True,
                            )
                        )
                        wait_until(lambda: _ready(f"http://127.0.0.1:{port}/readyz?workers=1"), timeout=30)
                continue
            if "gateway-stub" in block:  # a long-running command of its own terminal
                logs.append((tmp_path / "stub.log").open("wb"))
                background.append(
                    subprocess.Popen(
                        ["bash", "-c", adapt(block)],
                        cwd=copy,
                        env=bare,
                        stdout=logs[-1],
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
                wait_until(lambda: _ready(f"http://127.0.0.1:{stub_port}/readyz"), timeout=15)
                continue
            done = subprocess.run(
                ["bash", "-e", "-o", "pipefail", "-c", adapt(block)],
                cwd=copy,
                env=bare,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"README block failed:\n{block}\n{done.stdout}\n{done.stderr}"
            assert "Traceback" not in done.stderr, done.stderr

        # What the README says happened did happen: the push and the script's turns reached the gateway.
        def delivered() -> list[str]:
            answered = httpx.get(f"http://127.0.0.1:{stub_port}/_stub/requests").json()
            messages = [
                r["body"].get("message", "") for r in answered if r["path"] == "agent" and r["status"] == 200
            ]
            return messages if len(messages) >= 3 else []

        agent_messages = wait_until(delivered, timeout=15)
        assert any("Codertocat/Hello-World" in m for m in agent_messages)
        assert "hi" in agent_messages and "Summarise overnight alerts" in agent_messages
        assert record.read_text().strip()
    finally:
        for proc in reversed(background):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
        for log in logs:
            log.close()
    # `make run` stopped cleanly: no `relay up` left behind, so commands now say so in one line.
    after = subprocess.run(
        [str(copy / ".venv/bin/relay"), "events"],
        cwd=copy,
        env=bare,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert after.returncode == 3 and "`relay up`" in after.stderr and len(after.stderr.splitlines()) == 1


def readme_commands(text: str) -> set[tuple[str, ...]]:
    """`relay X` (and `relay X Y`) as the README writes commands: code spans that start with `relay `,
    and command lines of shell blocks (comments dropped)."""
    commands = re.findall(r"`relay ([^`\n]+)`", text)
    for block in shell_blocks(text):
        for line in block.splitlines():
            line = line.split(" #")[0]
            commands += re.findall(r"(?:^|\.venv/bin/|[|&;$(]\s*)relay ([^|&;)]+)", line.strip())
    found = set()
    for command in commands:
        words = re.findall(r"^([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", command.strip())
        if words:
            found.add(tuple(w for w in words[0] if w))
    return found


def test_every_relay_command_the_readme_names_exists() -> None:
    assert any(m[0] == "events" for m in readme_commands(README.read_text()))
    mentioned = set().union(*(readme_commands(page.read_text()) for page in DOC_PAGES))
    assert ("dlq", "replay") in mentioned and ("schedules", "run") in mentioned  # the docs are read too
    missing = []
    for words in sorted(mentioned):
        command = cli.commands.get(words[0])
        if command is None:
            missing.append(" ".join(words))
        elif isinstance(command, click.Group) and len(words) > 1 and words[1] not in command.commands:
            missing.append(" ".join(words))
    assert not missing, f"the README or docs/ name commands that do not exist: {missing}"
