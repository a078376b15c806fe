"""The benchmark (bench/run.py) runs end to end: every section, real processes, a table at the end.

This checks that the bench works, not how fast the relay is: no number is asserted. It runs the
`--smoke` size (tiny counts, about a minute of wall time, most of it starting and stopping
processes), so it is marked slow; `make bench-smoke` runs the `--quick` size by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_smoke_runs_every_section(tmp_path: Path) -> None:
    for tool in ("redis-server", "wrk"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install -y {tool})")
    out = tmp_path / "results.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=280, cwd=ROOT, env={**os.environ, "BENCH_NO_REEXEC": "1", "PATH": _path()},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert text.strip() == proc.stdout.strip()
    for heading in ("## 1. Ingress", "## 2. Delivery", "## 3. End to end", "## 4. Burst", "## 5. Memory",
                    "## Targets"):  # fmt: skip
        assert heading in text, heading
    assert "Versions: python" in text and "redis-server" in text and "Machine: nproc" in text
    assert "| **relay serve**" in text and "| bare Starlette" in text
    assert "asyncio consumer" in text


def _path() -> str:
    return f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
