"""``python -m flask_alisms.testing``: the emulator standalone, for developing an app by hand.

Why a module of its own: the command line needs the emulator, and the emulator needs the
server, so the command cannot live in :mod:`.server` without an import cycle.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from .actions import AcceptedMessage
from .emulator import DysmsapiEmulator

__all__ = ["main"]


def _parse_template(spec: str) -> tuple[str, tuple[str, ...]]:
    code, _, names = spec.partition(":")
    return code, tuple(name for name in names.split(",") if name)


def _masked(number: str) -> str:
    return f"{number[:3]}****{number[-4:]}" if len(number) > 7 else "****"


def _describe(message: AcceptedMessage) -> str:
    """One accepted SMS for the console: what a developer needs to go on (the code)."""
    params = " ".join(f"{name}={value}" for name, value in message.template_param.items())
    numbers = ",".join(_masked(number) for number in message.numbers)
    return f"SMS to {numbers} 【{message.sign_name}】 {message.template_code} {params}".rstrip()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the emulator standalone until Ctrl-C, for developing an app against it by hand."""
    parser = argparse.ArgumentParser(
        prog="python -m flask_alisms.testing",
        description="Local emulator of the Alibaba Cloud SMS API (Dysmsapi 2017-05-25).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument(
        "--access-key", action="append", metavar="ID:SECRET", help="repeatable; testId:testSecret"
    )
    parser.add_argument("--sign", action="append", metavar="NAME", help="approved signature")
    parser.add_argument(
        "--template", action="append", metavar="CODE:VAR[,VAR]", help="approved template"
    )
    parser.add_argument("--no-flow-control", action="store_true")
    parser.add_argument("--push-url", metavar="URL", help="POST delivery receipts (SmsReport) here")
    parser.add_argument("--receipt-delay", type=float, default=2.0, metavar="SECONDS")
    parser.add_argument("--success-rate", type=float, default=1.0, metavar="0-1")
    parser.add_argument("--duplicates", type=int, default=0, help="extra pushes of each receipt")
    args = parser.parse_args(argv)

    access_keys = None
    if args.access_key:
        access_keys = dict(key.partition(":")[::2] for key in args.access_key)
    emulator = DysmsapiEmulator(
        access_keys=access_keys,
        sign_names=args.sign or ("阿里云短信测试",),
        templates=dict(_parse_template(t) for t in args.template) if args.template else None,
        flow_control=not args.no_flow_control,
        host=args.host,
        port=args.port,
    )
    try:
        emulator.configure_receipts(
            args.push_url,
            delay=args.receipt_delay,
            success_rate=args.success_rate,
            duplicates=args.duplicates,
            background=bool(args.push_url),
        )
    except ValueError as exc:
        parser.error(str(exc))
    with emulator:
        print(f"Dysmsapi emulator listening on {emulator.endpoint}", flush=True)
        if args.push_url:
            print(f"  receipts to: {args.push_url}", flush=True)
        print(f"  access keys: {', '.join(emulator.access_keys)}", flush=True)
        print(f"  signatures:  {', '.join(sorted(emulator.sign_names))}", flush=True)
        print(f"  templates:   {', '.join(emulator.templates)}", flush=True)
        print("  each accepted SMS is printed here, as a phone would show it", flush=True)
        try:
            seen = 0
            while True:
                time.sleep(0.2)
                messages = emulator.messages
                for message in messages[seen:]:
                    print(_describe(message), flush=True)
                seen = len(messages)
        except KeyboardInterrupt:
            print("stopping", flush=True)
