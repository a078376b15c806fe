"""Run the default suite N times and list every test that failed at least once.

    python tests/repeat.py 5            # what `make test-repeat N=5` runs

A test that fails one run in five fails CI often enough to throw away good work; this makes such
tests visible before CI finds them. Each run writes a JUnit report; the failures of all runs are
counted per test. Exit status 1 when any test failed in any run.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

PYTEST = [sys.executable, "-m", "pytest", "-m", "not slow", "-n", "2", "-q", "-p", "no:cacheprovider"]


def failures(report: Path) -> list[str]:
    """The node ids of the failed or errored test cases in one JUnit report."""
    if not report.exists():
        return ["<the run wrote no report>"]
    out = []
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 - our own pytest wrote it
        if case.find("failure") is not None or case.find("error") is not None:
            out.append(f"{case.get('classname', '')}::{case.get('name', '')}")
    return out


def main(argv: list[str]) -> int:
    runs = int(argv[1]) if len(argv) > 1 else 5
    failed: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(1, runs + 1):
            report = Path(tmp) / f"run{run}.xml"
            started = time.monotonic()
            code = subprocess.call([*PYTEST, f"--junitxml={report}"])
            these = failures(report)
            failed.update(these)
            took = time.monotonic() - started
            print(f"run {run}/{runs}: exit {code}, {len(these)} failed, {took:.0f} s", flush=True)
    if not failed:
        print(f"no test failed in {runs} runs")
        return 0
    print(f"tests that failed at least once in {runs} runs:")
    for test, count in failed.most_common():
        print(f"  {count}/{runs}  {test}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
