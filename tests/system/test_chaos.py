"""The chaos soak (see tests/system/chaos.py): short form in the default suite, long form marked slow."""

from __future__ import annotations

from pathlib import Path

import pytest

from .chaos import run_chaos


def assert_clean(report) -> None:  # type: ignore[no-untyped-def]
    print(report.line())
    assert report.acknowledged == report.sent, report.problems[:10]
    assert report.lost == 0, report.problems[:10]
    assert report.duplicates == 0, report.problems[:10]
    assert report.out_of_order == 0, report.problems[:10]
    assert report.unexpected_dead == 0, report.problems[:10]
    assert report.worker_kills > 0


@pytest.mark.timeout(600)
def test_chaos_soak_short(tmp_path: Path) -> None:
    assert_clean(run_chaos(tmp_path, events=500, down=5.0, sessions=40))


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_chaos_soak_long(tmp_path: Path) -> None:
    assert_clean(run_chaos(tmp_path, events=5000, down=30.0, sessions=200, drain_timeout=1800))
