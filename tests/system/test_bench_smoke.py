"""The benchmark (bench/run.py) runs end to end: real processes, a table at the end.

This checks that the bench works, not how fast the relay is: no number is asserted. The default
suite runs the `--smoke` size of the ingress section (about 20 s, most of it starting and
stopping processes); every section at `--smoke` size takes over a minute and is marked slow.
`make bench-smoke` runs the `--quick` size by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT


def run_bench(tmp_path: Path, *args: str) -> str:
    for tool in ("redis-server", "wrk"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (apt-get install -y {tool}; .ci/run does)")
    out = tmp_path / "results.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
        env={**os.environ, "BENCH_NO_REEXEC": "1", "PATH": _path()},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out.read_text()


@pytest.mark.timeout(120)
def test_bench_smoke_ingress_section(tmp_path: Path) -> None:
    text = run_bench(tmp_path, "--only", "ingress")
    assert "## 1. Ingress" in text and "## Targets" in text
    assert "| **relay serve**" in text and "| bare Starlette" in text and "vs bare" in text
    assert "### 1b. Every workload" in text and "| Alertmanager group of 20 firing alerts" in text
    assert "Versions: python" in text and "Machine: nproc" in text


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_smoke_runs_every_section(tmp_path: Path) -> None:
    out = tmp_path / "all"
    out.mkdir()
    text = run_bench(out)
    for heading in (
        "## 1. Ingress",
        "## 2. Delivery",
        "## 3. End to end",
        "## 4. Burst",
        "## 5. Memory",
        "## Targets",
    ):
        assert heading in text, heading
    assert "Versions: python" in text and "redis-server" in text and "Machine: nproc" in text
    assert "| **relay serve**" in text and "| bare Starlette" in text
    assert "asyncio consumer" in text


def _path() -> str:
    return f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
