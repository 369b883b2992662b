"""Optional Prometheus metrics: off by default, fed by the signals, multi-process safe."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
from prometheus_client import REGISTRY
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

from flask_alisms import signals
from flask_alisms.exceptions import ConfigurationError
from flask_alisms.metrics import metrics_app
from flask_alisms.testing import DysmsapiEmulator

from .conftest import OTHER_PHONE, PHONE, Host, api_post


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def metered(make_host: Any) -> Host:
    host = make_host(ALISMS_METRICS=True)
    host.configure_sms()
    return host


def test_off_unless_enabled(ready_host: Host, emulator: DysmsapiEmulator) -> None:
    before = sample("alisms_sms_sends_total", purpose="register", result="OK")
    assert api_post(ready_host.client(), "send-code", {"phone": PHONE}).status_code == 200
    assert len(emulator.messages) == 1
    assert sample("alisms_sms_sends_total", purpose="register", result="OK") == before
    assert "alisms.metrics" not in ready_host.app.extensions


def test_sends_latency_refusals_and_checks(metered: Host, emulator: DysmsapiEmulator) -> None:
    ok = ("alisms_sms_sends_total", {"purpose": "register", "result": "OK"})
    limited = (
        "alisms_sms_sends_total",
        {"purpose": "register", "result": "isv.BUSINESS_LIMIT_CONTROL"},
    )
    other = ("alisms_sms_sends_total", {"purpose": "register", "result": "other"})
    latency = ("alisms_sms_send_seconds_count", {"purpose": "register"})
    refused = ("alisms_limit_refusals_total", {"rule": "phone"})
    wrong = ("alisms_code_checks_total", {"purpose": "register", "outcome": "wrong"})
    watched = [ok, limited, other, latency, refused, wrong]
    before = {name + repr(labels): sample(name, **labels) for name, labels in watched}

    client = metered.client()
    assert api_post(client, "send-code", {"phone": PHONE}).status_code == 200
    api_post(client, "send-code", {"phone": PHONE})  # within the resend interval: refused
    emulator.fail_next("isv.BUSINESS_LIMIT_CONTROL")
    api_post(metered.client(), "send-code", {"phone": OTHER_PHONE})
    emulator.fail_next("isv.SOMETHING_NEW", status=200)
    api_post(metered.client(), "send-code", {"phone": "+8613700137000"})
    code = "000000" if emulator.last_param("13800138000") != "000000" else "111111"
    api_post(client, "register", {"phone": PHONE, "code": code, "password": "Secret-pass-1"})

    after = {name + repr(labels): sample(name, **labels) for name, labels in watched}
    deltas = {key: after[key] - before[key] for key in after}
    assert list(deltas.values()) == [1, 1, 1, 3, 1, 1], deltas
    total = sample("alisms_sms_send_seconds_sum", purpose="register")
    assert 0 < total < 30


def test_receipts_counted_through_the_signal(metered: Host) -> None:
    before = sample("alisms_sms_receipts_total", state="delivered")
    signals.receipt_received.send(metered.app, state="delivered", err_code="DELIVERED")
    assert sample("alisms_sms_receipts_total", state="delivered") == before + 1


def test_metrics_app_serves_the_scrape(metered: Host, emulator: DysmsapiEmulator) -> None:
    api_post(metered.client(), "send-code", {"phone": PHONE})
    app = DispatcherMiddleware(metered.app.wsgi_app, {"/metrics": metrics_app()})
    response = Client(app).get("/metrics")
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'alisms_sms_sends_total{purpose="register",result="OK"}' in text
    assert "13800138000" not in text


def test_missing_prometheus_client_is_a_clear_error(
    make_host: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ConfigurationError, match=r"flask-alisms\[metrics\]"):
        make_host(ALISMS_METRICS=True)


def test_bad_switch_is_refused(make_host: Any) -> None:
    with pytest.raises(ConfigurationError, match="ALISMS_METRICS"):
        make_host(ALISMS_METRICS="yes")


WORKER = textwrap.dedent(
    """
    from flask import Flask
    from flask_alisms import metrics, signals
    from flask_alisms.sms import SendResult

    app = Flask("worker")
    metrics.install(app)
    result = SendResult(True, "OK", "OK", 200, None, None, 120.0, None)
    for _ in range(int(__import__("sys").argv[1])):
        signals.code_sent.send(app, phone="x", purpose="reset", result=result)
    """
)

SCRAPER = textwrap.dedent(
    """
    from werkzeug.test import Client
    from flask_alisms.metrics import metrics_app

    print(Client(metrics_app()).get("/").get_data(as_text=True))
    """
)


def test_gunicorn_style_processes_are_summed(tmp_path: Any) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for count in ("2", "3"):  # two worker processes
        subprocess.run([sys.executable, "-c", WORKER, count], env=env, check=True)  # noqa: S603
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-c", SCRAPER], env=env, check=True, capture_output=True, text=True
    ).stdout
    assert 'alisms_sms_sends_total{purpose="reset",result="OK"} 5.0' in out
    assert 'alisms_sms_send_seconds_count{purpose="reset"} 5.0' in out


def test_send_refused_signal_carries_no_number(ready_host: Host) -> None:
    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    signals.send_refused.connect(receiver, sender=ready_host.app)
    try:
        client = ready_host.client()
        assert api_post(client, "send-code", {"phone": PHONE}).status_code == 200
        assert api_post(client, "send-code", {"phone": PHONE}).status_code == 429
    finally:
        signals.send_refused.disconnect(receiver, sender=ready_host.app)
    assert seen == [{"purpose": "register", "rule": "phone"}]
