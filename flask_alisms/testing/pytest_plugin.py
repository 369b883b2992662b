"""pytest plugin of flask-alisms: the ``dysmsapi_emulator`` fixture.

Registered through the ``pytest11`` entry point, so any project that installs flask-alisms can
test its SMS code against :class:`flask_alisms.testing.DysmsapiEmulator` without network access.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .emulator import DysmsapiEmulator

_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


@pytest.fixture
def dysmsapi_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[DysmsapiEmulator]:
    """A started emulator with the default key, sign and template; stopped after the test.

    It also clears the proxy variables for the test: the Aliyun SDK ignores ``NO_PROXY`` and
    would otherwise send requests for ``127.0.0.1`` to the proxy.
    """
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with DysmsapiEmulator() as emulator:
        yield emulator
