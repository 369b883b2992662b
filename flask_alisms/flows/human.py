"""The human check before a code is sent: the :class:`HumanCheck` interface, its built-ins and
the per-app :class:`HumanGate` that applies the admin's mode.

Why a gate in front of send-code: every SMS is billed, and the limits alone let a botnet spend
the whole daily budget from many IPs. The check is chosen by the deployment
(``ALISMS_HUMAN_CHECK``) and switched by the admin (``human_check.mode``): ``off``, ``always``,
or ``adaptive``, which asks for it only once a client IP or the whole site has spent a stated
share of its send budget, so ordinary users see it only while the site is under attack.

A challenge lives in the Flask session (a random nonce and when it was issued), so a solved
check counts only in the session it was shown to, for ``ALISMS_HUMAN_CHECK_TTL`` seconds, and
once: the send-code request that brings an answer takes the challenge out of the session and
marks its nonce used in the limits storage (a replayed cookie finds it spent) before anything
else happens, so it is gone even when the send is then refused.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlencode

from flask import current_app, session, url_for

from .. import signals
from ..exceptions import ConfigurationError, HumanCheckRequired, HumanCheckUnavailable
from ..parameters import ParameterStore
from .throttle import Throttle, count_use, peek_counts, send_usage_rules

logger = logging.getLogger(__name__)

MODES = ("off", "always", "adaptive")
SESSION_KEY = "_alisms_human"
#: The JSON key (API) and form field (image captcha page) that carry the answer.
ANSWER_FIELD = "human_check"
MAX_ANSWER_CHARS = 4096  # a Turnstile token is at most 2048
IMAGE_RENDERS_PER_CHALLENGE = 3  # more renders of one text would help OCR by averaging


class HumanCheck(abc.ABC):
    """One way of telling people from scripts. Subclass it and name the class in
    ``ALISMS_HUMAN_CHECK = "package.module:Class"`` to bring your own."""

    #: Short name the client sees in ``human_check.kind``.
    kind: ClassVar[str] = "custom"
    #: The page's form field that carries the answer (widgets post their own names).
    form_field: ClassVar[str] = ANSWER_FIELD
    #: The partial that shows the challenge inside the register and reset forms.
    template: ClassVar[str] = "alisms/_human_check.html"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> HumanCheck:
        """Build the check from the app config (``ALISMS_HUMAN_CHECK_*`` keys)."""
        return cls()

    @abc.abstractmethod
    def challenge(self, nonce: str) -> dict[str, Any]:
        """What the client must show for the challenge ``nonce``, as JSON-able values."""

    @abc.abstractmethod
    def verify(self, nonce: str, answer: str, client_ip: str) -> bool:
        """Whether ``answer`` solves challenge ``nonce``; raise :class:`HumanCheckUnavailable`
        when that cannot be told (a provider outage), never guess True."""

    def content_security_policy(self) -> str | None:
        """The page's CSP when the challenge needs outside scripts or frames; None keeps ours."""
        return None


class ImageCaptcha(HumanCheck):
    """A picture of a few characters, drawn locally with the ``captcha`` library.

    The text is derived from the nonce with a key from the deployment's key material, so no
    answer is stored anywhere and none can be read from the (signed, not encrypted) session.
    """

    kind = "image"
    ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: 32 symbols, 256 % 32 == 0
    LENGTH = 5

    def __init__(self, key_material: str | bytes, *, width: int = 160, height: int = 60) -> None:
        raw = key_material.encode() if isinstance(key_material, str) else key_material
        self._key = hashlib.sha256(b"flask-alisms human check\x00" + raw).digest()
        self._size = (width, height)
        self._drawer: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> HumanCheck:
        return cls(config.get("ALISMS_ENCRYPTION_KEY") or config["SECRET_KEY"])

    def text_for(self, nonce: str) -> str:
        """The characters the picture of ``nonce`` shows (tests read it to solve the check)."""
        digest = hmac.new(self._key, nonce.encode(), hashlib.sha256).digest()
        return "".join(self.ALPHABET[byte % len(self.ALPHABET)] for byte in digest[: self.LENGTH])

    def challenge(self, nonce: str) -> dict[str, Any]:
        return {
            "image_url": url_for("alisms.human_check_image", nonce=nonce),
            "width": self._size[0],
            "height": self._size[1],
            "length": self.LENGTH,
        }

    def verify(self, nonce: str, answer: str, client_ip: str) -> bool:
        typed = "".join(answer.split()).upper()
        return hmac.compare_digest(typed.encode(), self.text_for(nonce).encode())

    def render(self, nonce: str) -> bytes:
        """The PNG picture; the library (and Pillow) load on the first one only."""
        with self._lock:  # one drawer, whose fonts are not meant for several threads at once
            if self._drawer is None:
                from captcha.image import ImageCaptcha as Drawer

                self._drawer = Drawer(width=self._size[0], height=self._size[1])
            return bytes(self._drawer.generate(self.text_for(nonce), format="png").getvalue())


class SiteverifyCheck(HumanCheck):
    """A hosted widget whose token the server checks on the provider's siteverify API.

    The POST has a bounded timeout; no answer, a 5xx, a body that is not JSON or an error
    naming our own secret raise :class:`HumanCheckUnavailable` (a 503, never a pass).
    """

    DEFAULT_VERIFY_URL: ClassVar[str]
    SCRIPT_URL: ClassVar[str]
    CSP_ORIGINS: ClassVar[str]
    #: Error codes that mean the site's keys are wrong: the admin must act, the user cannot.
    CONFIG_ERRORS: ClassVar[frozenset[str]] = frozenset(
        {"missing-input-secret", "invalid-input-secret", "sitekey-secret-mismatch"}
    )

    def __init__(
        self, site_key: str, secret_key: str, *, verify_url: str | None, timeout: float
    ) -> None:
        self.site_key = site_key
        self._secret = secret_key
        self.verify_url = verify_url or self.DEFAULT_VERIFY_URL
        self.timeout = timeout

    def __repr__(self) -> str:  # never the secret
        return f"{type(self).__name__}(site_key={self.site_key!r}, verify_url={self.verify_url!r})"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> HumanCheck:
        return cls(
            config["ALISMS_HUMAN_CHECK_SITE_KEY"],
            config["ALISMS_HUMAN_CHECK_SECRET_KEY"],
            verify_url=config.get("ALISMS_HUMAN_CHECK_VERIFY_URL"),
            timeout=float(config.get("ALISMS_HUMAN_CHECK_TIMEOUT", 5.0)),
        )

    def challenge(self, nonce: str) -> dict[str, Any]:
        return {"site_key": self.site_key, "script_url": self.SCRIPT_URL}

    def content_security_policy(self) -> str:
        origins = self.CSP_ORIGINS
        return (
            f"default-src 'self'; script-src 'self' {origins}; frame-src {origins}; "
            f"style-src 'self' {origins}; connect-src 'self' {origins}; img-src 'self' data:; "
            "frame-ancestors 'none'; form-action 'self'"
        )

    def _fields(self, nonce: str, answer: str, client_ip: str) -> dict[str, str]:
        return {"secret": self._secret, "response": answer, "remoteip": client_ip}

    def _accept(self, nonce: str, answer: Mapping[str, Any]) -> bool:
        return True

    def verify(self, nonce: str, answer: str, client_ip: str) -> bool:
        request = urllib.request.Request(  # noqa: S310 - config.py allows http(s) URLs only
            self.verify_url,
            data=urlencode(self._fields(nonce, answer, client_ip)).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                raw = response.read(65536)
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code == 429:
                raise self._down(f"HTTP {exc.code}") from None
            raw = exc.read(65536)  # a 4xx with a JSON verdict: read it like a 200
        except (OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
            raise self._down(type(exc).__name__) from None
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise self._down("an answer that is not a JSON object")
        if data.get("success") is True:
            return self._accept(nonce, data)
        codes = data.get("error-codes")
        codes = [str(code) for code in codes] if isinstance(codes, list) else []
        if self.CONFIG_ERRORS.intersection(codes):
            logger.error(
                "%s refused the site's keys (%s): check ALISMS_HUMAN_CHECK_SITE_KEY and "
                "ALISMS_HUMAN_CHECK_SECRET_KEY",
                self.kind,
                ", ".join(codes),
            )
            raise HumanCheckUnavailable(f"{self.kind} refused the site's keys")
        return False

    def _down(self, what: str) -> HumanCheckUnavailable:
        logger.error("%s siteverify at %s failed: %s", self.kind, self.verify_url, what)
        return HumanCheckUnavailable(f"{self.kind} siteverify failed: {what}")


class Turnstile(SiteverifyCheck):
    """Cloudflare Turnstile; the widget carries the challenge's nonce as ``cData``, which
    siteverify hands back, binding the token to the session that was shown the widget."""

    kind = "turnstile"
    form_field = "cf-turnstile-response"
    DEFAULT_VERIFY_URL = "https://challenges.cloudflare.com/turnstile/v0/siteverify"
    SCRIPT_URL = "https://challenges.cloudflare.com/turnstile/v0/api.js"
    CSP_ORIGINS = "https://challenges.cloudflare.com"

    def challenge(self, nonce: str) -> dict[str, Any]:
        return {**super().challenge(nonce), "cdata": nonce}

    def _accept(self, nonce: str, answer: Mapping[str, Any]) -> bool:
        return hmac.compare_digest(str(answer.get("cdata") or "").encode(), nonce.encode())


class HCaptcha(SiteverifyCheck):
    """hCaptcha; siteverify also checks that the token was made for our site key."""

    kind = "hcaptcha"
    form_field = "h-captcha-response"
    DEFAULT_VERIFY_URL = "https://api.hcaptcha.com/siteverify"
    SCRIPT_URL = "https://js.hcaptcha.com/1/api.js"
    CSP_ORIGINS = "https://hcaptcha.com https://*.hcaptcha.com"

    def _fields(self, nonce: str, answer: str, client_ip: str) -> dict[str, str]:
        return {**super()._fields(nonce, answer, client_ip), "sitekey": self.site_key}


BUILT_INS: dict[str, type[HumanCheck]] = {
    "image": ImageCaptcha,
    "turnstile": Turnstile,
    "hcaptcha": HCaptcha,
}


def create_human_check(config: Mapping[str, Any]) -> HumanCheck:
    """The check ``ALISMS_HUMAN_CHECK`` names: a built-in or ``package.module:Class``."""
    name = config["ALISMS_HUMAN_CHECK"]
    if name in BUILT_INS:
        return BUILT_INS[name].from_config(config)
    import importlib

    module_name, _, class_name = str(name).partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"ALISMS_HUMAN_CHECK={name!r} cannot be imported: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, HumanCheck)):
        raise ConfigurationError(f"ALISMS_HUMAN_CHECK={name!r} is not a HumanCheck subclass.")
    return cls.from_config(config)


class HumanGate:
    """Applies ``human_check.mode`` with one :class:`HumanCheck`, for one app."""

    def __init__(
        self, check: HumanCheck, params: ParameterStore, throttle: Throttle, *, ttl: int
    ) -> None:
        self.check = check
        self.ttl = ttl
        self._params = params
        self._throttle = throttle

    def never(self) -> bool:
        """Whether no send needs a check in the current mode (so the client's digest, which
        :meth:`required` takes, need not be computed)."""
        return self._params.values().mode not in ("always", "adaptive")

    def required(self, client: str) -> bool:
        """Whether a send from ``client`` (the keyed digest the send limits use) needs a
        solved check now. Spends nothing."""
        values = self._params.values()
        if values.mode == "always":
            return True
        if values.mode != "adaptive":
            return False
        rules = send_usage_rules(self._throttle, client)
        counts = peek_counts(self._throttle, rules)
        share = values.adaptive_share
        return any(count * 100 >= share * rule.limit for count, rule in zip(counts, rules))

    def new_challenge(self) -> dict[str, Any]:
        """Start a challenge in this session (replacing any older one): what to show."""
        nonce = secrets.token_urlsafe(16)
        session[SESSION_KEY] = {"n": nonce, "at": int(time.time())}
        return {
            "kind": self.check.kind,
            **self.check.challenge(nonce),
            "field": ANSWER_FIELD,
            "expires_in": self.ttl,
        }

    def _live_nonce(self, held: Any) -> str | None:
        if not (isinstance(held, dict) and isinstance(held.get("n"), str)):
            return None
        issued = held.get("at")
        age = time.time() - issued if isinstance(issued, int) else self.ttl + 1
        return held["n"] if 0 <= age <= self.ttl else None

    def consume(self, answer: object, client_ip: str) -> None:
        """Spend this session's challenge on ``answer``; raise unless it was solved.

        Raises :class:`HumanCheckRequired` or :class:`HumanCheckUnavailable`. The challenge
        is gone afterwards whatever happens next, so each solved check allows one send.
        """
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        kind = self.check.kind
        try:
            self._consume(answer, client_ip)
        except HumanCheckRequired as exc:
            signals.human_check_refused.send(
                app, kind=kind, reason=exc.reason, client_ip=client_ip
            )
            raise
        except HumanCheckUnavailable:
            signals.human_check_refused.send(
                app, kind=kind, reason="unavailable", client_ip=client_ip
            )
            raise
        signals.human_check_passed.send(app, kind=kind, client_ip=client_ip)

    def _consume(self, answer: object, client_ip: str) -> None:
        nonce = self._live_nonce(session.pop(SESSION_KEY, None))
        text = answer.strip() if isinstance(answer, str) else ""
        if not text:
            raise HumanCheckRequired("missing")
        if nonce is None:
            raise HumanCheckRequired("expired")
        if count_use(self._throttle, "human-used", nonce, self.ttl) != 1:
            raise HumanCheckRequired("reused")
        if len(text) > MAX_ANSWER_CHARS or not self.check.verify(nonce, text, client_ip):
            raise HumanCheckRequired("wrong")

    def image(self, nonce: str) -> bytes | None:
        """The picture of this session's live challenge ``nonce``, a few times at most."""
        check = self.check
        held = session.get(SESSION_KEY)
        if not isinstance(check, ImageCaptcha) or self._live_nonce(held) != nonce:
            return None
        if count_use(self._throttle, "human-image", nonce, self.ttl) > IMAGE_RENDERS_PER_CHALLENGE:
            return None
        return check.render(nonce)
