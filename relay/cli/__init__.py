"""The `relay` command, one module per command group (relay.cli.main registers them)."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: imports the commands only when run, so that `python -m relay.cli.main`
    does not find relay.cli.main imported already by its own package."""
    from relay.cli.main import main as run

    run(argv)


__all__ = ["main"]
