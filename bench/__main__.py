"""python -m bench: the whole benchmark in one command (see bench/run.py);
python -m bench --streams [--count N ...]: the event-stream scenario (bench/streams.py)."""

import sys


def main() -> int:
    if sys.argv[1:2] == ["--streams"]:
        from .streams import main as streams

        return streams(sys.argv[2:])
    from .run import main as run

    return run()


sys.exit(main())
