"""Run the benchmarks and print their tables; see benchmarks/README.md.

    python benchmarks/run.py                       # every scenario, about 10 minutes
    python benchmarks/run.py scale --seconds 2     # one scenario, shorter rows
    python benchmarks/run.py --database-server mysql+pymysql://root@127.0.0.1:3306/mysql

Scenarios (one file each): ``scale`` (limits holding 0 / 10,000 / 100,000 numbers), ``floor``
(send-code vs the same I/O by hand), ``peers`` (vs Flask-Security-Too and Flask-Limiter),
``where`` (send-code's CPU time by package, next to the floor's, under cProfile);
``host_route.py`` runs on its own. The benchmark creates its own database on the server given
and its own redis-server, and removes both at the end; nothing else is written to.
Needs the ``bench`` extra: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import alisms_app
import floor
import peers
import scale
import where
from harness import Services, machine

SCENARIOS = ("scale", "floor", "peers", "where")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], default=[])
    parser.add_argument(
        "--database-server",
        default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
        help="a database server's URL; a database bench_<random> is created there and dropped",
    )
    parser.add_argument("--redis-server", default="redis-server", help="the binary to start")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per row (median p50)")
    args = parser.parse_args(argv)
    chosen = args.scenarios or list(SCENARIOS)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up on kill as on Ctrl-C
    began = time.monotonic()
    print(f"flask-alisms benchmarks, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {machine()}; gunicorn 2 sync workers, 1 client connection")
    with Services(args.database_server, args.redis_server) as services:
        alisms_app.setup_database(services.database_url)
        options = {"seconds": args.seconds, "rounds": args.rounds}
        if "scale" in chosen:
            print("\n" + scale.measure(services, **options)[1], flush=True)
        if "floor" in chosen:
            print("\n" + floor.measure(services, **options)[1], flush=True)
        if "peers" in chosen:
            print("\n" + peers.measure(services, **options)[1], flush=True)
        if "where" in chosen:
            print("\n" + where.measure(services, **options)[1], flush=True)
    print(f"\n({time.monotonic() - began:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
