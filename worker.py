"""RQ worker entry point: `python worker.py` is the same as `relay worker`."""

from relay.cli import main

if __name__ == "__main__":
    main(["worker"])
