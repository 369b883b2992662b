"""Optional Prometheus metrics, fed by the extension's blinker signals.

Why signals: the flows stay free of monitoring code, and a site without ``ALISMS_METRICS``
pays nothing (no receiver is connected, ``prometheus_client`` is never imported).

Enable with ``ALISMS_METRICS = True`` and ``pip install flask-alisms[metrics]``; expose the
numbers with :func:`metrics_app` (see the README). Under gunicorn with several workers, set
``PROMETHEUS_MULTIPROC_DIR`` before the workers start, as ``prometheus_client`` documents:
every process writes its own files there and :func:`metrics_app` sums them.

No label ever holds a phone number, a code or a secret: labels are the purpose, Aliyun's
result code (unknown codes become ``other``), the limit rule and the receipt state.
Spend is the counter ``alisms_sms_billed_cny_total`` (see the comment where it is made).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask

from . import signals
from .exceptions import ConfigurationError
from .sms import known_codes

__all__ = ["install", "metrics_app", "registry_metrics"]

_LOCK = threading.Lock()
_METRICS: dict[int, dict[str, Any]] = {}
#: Seconds; SendSms usually answers in 50-300 ms, a timeout is several seconds.
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 3.0, 5.0, 10.0)


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigurationError(
            "ALISMS_METRICS needs prometheus_client: pip install 'flask-alisms[metrics]'."
        ) from None
    return prometheus_client


def registry_metrics(registry: Any = None) -> dict[str, Any]:
    """The extension's metric objects in ``registry`` (default: prometheus_client's), made
    once per registry so several apps in one process share them."""
    prom = _prometheus()
    target = registry if registry is not None else prom.REGISTRY
    with _LOCK:
        made = _METRICS.get(id(target))
        if made is None:
            made = {
                "sends": prom.Counter(
                    "alisms_sms_sends",
                    "Code SMS handed to the provider, by purpose and result code.",
                    ["purpose", "result"],
                    registry=target,
                ),
                "latency": prom.Histogram(
                    "alisms_sms_send_seconds",
                    "Time the provider took to answer a code SMS.",
                    ["purpose"],
                    buckets=LATENCY_BUCKETS,
                    registry=target,
                ),
                "refusals": prom.Counter(
                    "alisms_limit_refusals",
                    "Requests refused by the site's limits, by rule.",
                    ["rule"],
                    registry=target,
                ),
                "checks": prom.Counter(
                    "alisms_code_checks",
                    "Submitted codes, by purpose and outcome.",
                    ["purpose", "outcome"],
                    registry=target,
                ),
                "receipts": prom.Counter(
                    "alisms_sms_receipts",
                    "Delivery receipts stored, by state.",
                    ["state"],
                    registry=target,
                ),
                # Spend as a counter, not per-period gauges: a counter is summed across
                # gunicorn workers (and dead workers' files) in multi-process mode, which is
                # exactly right for money billed; a gauge of "today's spend" set by whichever
                # worker last looked would be stale after midnight and needs a multiprocess_mode
                # guess. increase(alisms_sms_billed_cny_total[1d]) gives a day's spend.
                "billed": prom.Counter(
                    "alisms_sms_billed_cny",
                    "CNY billed for delivered SMS segments, at billing.price_per_sms when the "
                    "receipt was matched.",
                    registry=target,
                ),
            }
            _METRICS[id(target)] = made
    return made


def _result_label(code: str) -> str:
    return code if code == "OK" or code in _KNOWN else "other"


_KNOWN = frozenset(known_codes())


def install(app: Flask, registry: Any = None) -> None:
    """Count this app's events (called by ``init_app`` when ``ALISMS_METRICS`` is on)."""
    metrics = registry_metrics(registry)

    def on_send(sender: Any, *, purpose: str, result: Any, **extra: Any) -> None:
        metrics["sends"].labels(purpose, _result_label(result.code)).inc()
        metrics["latency"].labels(purpose).observe(max(result.duration_ms, 0.0) / 1000.0)

    def on_refused(sender: Any, *, rule: str, **extra: Any) -> None:
        metrics["refusals"].labels(rule).inc()

    def on_verified(sender: Any, *, purpose: str, **extra: Any) -> None:
        metrics["checks"].labels(purpose, "accepted").inc()

    def on_rejected(sender: Any, *, purpose: str, reason: str, **extra: Any) -> None:
        metrics["checks"].labels(purpose, str(reason)).inc()
        if reason == "throttled":
            metrics["refusals"].labels("verify").inc()

    def on_receipt(sender: Any, *, state: str, **extra: Any) -> None:
        metrics["receipts"].labels(str(state)).inc()

    def on_billed(sender: Any, *, cost: Any = None, **extra: Any) -> None:
        if cost is not None:  # unknown while billing.price_per_sms is empty
            metrics["billed"].inc(float(cost))  # Prometheus values are floats

    receivers: list[tuple[Any, Callable[..., None]]] = [
        (signals.code_sent, on_send),
        (signals.code_send_failed, on_send),
        (signals.send_refused, on_refused),
        (signals.code_verified, on_verified),
        (signals.code_rejected, on_rejected),
        (signals.receipt_received, on_receipt),
        (signals.sms_billed, on_billed),
    ]
    for signal, receiver in receivers:
        signal.connect(receiver, sender=app, weak=False)
    app.extensions["alisms.metrics"] = receivers  # keeps them, and says metrics are on


def metrics_app() -> Any:
    """A WSGI app answering the Prometheus scrape, to mount at ``/metrics``.

    With ``PROMETHEUS_MULTIPROC_DIR`` set it sums every worker's files (a fresh registry per
    scrape, as prometheus_client's multi-process mode requires); otherwise it serves the
    process's default registry.
    """
    prom = _prometheus()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return prom.make_wsgi_app(registry)
    return prom.make_wsgi_app()
