"""Instructions per send-code request, send-code against the floor, counted by callgrind.

    python benchmarks/instructions.py                  # about 4 minutes: 40 requests each
    python benchmarks/instructions.py --requests 20

The steadiest figure on a shared machine: worker CPU and latency move by 10-15% between runs,
an instruction count does not. Each app runs in process under Valgrind's callgrind (the Flask
test client posts send-code, as ``where.py`` does), on this benchmark's own database and
redis-server (:class:`harness.Services`). Only the measured requests are counted: collection
is switched on inside ``itertools.starmap``'s step, which wraps each request, after 20
warm-up requests. The parameter cache and the send-time sample are kept from reloading
during the run (under Valgrind their 10 s and 30 s periods would come every few requests).
Only the client's side is counted; PostgreSQL's and Redis's own work is the same for both.
Needs ``valgrind`` (Debian's package).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

ROUTES = {
    "send-code": ("alisms_app", "/alisms/api/send-code", "/alisms/api/csrf-token"),
    "floor": ("floor", "/floor/send-code", "/floor/csrf-token"),
}


def child(name: str, requests: int, start: int) -> None:
    """Runs under Valgrind: warm up, then the counted requests."""
    import importlib

    from harness import phones

    module, path, token_path = ROUTES[name]
    app = importlib.import_module(module).create_app()
    client = app.test_client()
    token = client.get(token_path).get_json()["csrf_token"]
    numbers = phones(start, requests + 100)

    def one() -> None:
        answer = client.post(path, json={"phone": next(numbers)}, headers={"X-CSRFToken": token})
        assert answer.status_code == 200, answer.get_data()[:200]

    for _ in range(20):
        one()
    if name == "send-code":
        from flask_alisms.flows.guard import SendTimes

        SendTimes.REFRESH_SECONDS = 1e9
        app.extensions["alisms"].params._max_age = 1e9
    for _ in itertools.starmap(one, [()] * requests):  # counted: see --toggle-collect
        pass


def count(name: str, requests: int, start: int, env: dict[str, str]) -> int:
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        "--collect-atstart=no", "--toggle-collect=starmap_next",
        sys.executable, __file__, "--child", name, str(requests), str(start),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode or not found:
        raise SystemExit(f"callgrind run of {name} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument(
        "--database-server", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return 0
    import alisms_app
    from harness import Services

    with Services(args.database_server) as services:
        alisms_app.setup_database(services.database_url)
        env = dict(
            os.environ,
            BENCH_DATABASE_URL=services.database_url,
            BENCH_LIMITER_URI=services.redis_url,
        )
        counts = {}
        for offset, name in enumerate(ROUTES):
            total = count(name, args.requests, 30_000_000 + offset * 1_000_000, env)
            counts[name] = total / args.requests
            print(f"{name:10s} {counts[name] / 1e6:.3f} M instructions/request", flush=True)
    print(f"send-code / floor: {counts['send-code'] / counts['floor']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
