"""The ``ALISMS_*`` configuration keys: defaults in one place, checked once in ``init_app``.

Application configuration holds what belongs to a deployment (endpoints, keys, storage). What
an admin may change at run time lives in the parameter store instead (see :mod:`.settings`).
"""

from __future__ import annotations

import os
import zoneinfo
from collections.abc import Mapping
from typing import Any

from flask import Config

from . import i18n
from .exceptions import ConfigurationError

SENDERS = ("aliyun", "console", "memory", "auto")
HUMAN_CHECKS = ("image", "turnstile", "hcaptcha")

DEFAULTS: dict[str, Any] = {
    # Where the extension's pages and API live.
    "ALISMS_URL_PREFIX": "/alisms",
    # Which provider sends: "aliyun", "console" (development), "memory" (tests), "auto"
    # (Aliyun once the panel is filled in, console until then; development only) or an
    # import path "package.module:Class" of a Sender subclass.
    "ALISMS_SENDER": "aliyun",
    # None talks to the real dysmsapi.aliyuncs.com over HTTPS; "host:port" or
    # "http://host:port" points at an emulator.
    "ALISMS_ENDPOINT": None,
    "ALISMS_REGION_ID": "cn-hangzhou",
    # Seconds. Small, because an end user waits for the answer.
    "ALISMS_CONNECT_TIMEOUT": 3.0,
    "ALISMS_READ_TIMEOUT": 6.0,
    # Seconds for each call of the Aliyun setup check run after saving the parameters (and
    # by `flask alisms check --remote`); never more than the two timeouts above.
    "ALISMS_REMOTE_CHECK_TIMEOUT": 3.0,
    # Prometheus metrics through prometheus_client (pip install flask-alisms[metrics]).
    "ALISMS_METRICS": False,
    # Key material for encrypting the AccessKey secret and hashing codes; SECRET_KEY when unset.
    "ALISMS_ENCRYPTION_KEY": None,
    # Older key materials still accepted for decryption while `flask alisms rotate-key` runs.
    "ALISMS_ENCRYPTION_KEY_FALLBACKS": [],
    # Parameter values fixed by the deployment (they win over the database, read-only in the
    # panel) and values used until an admin saves one.
    "ALISMS_PARAMS": {},
    "ALISMS_PARAM_DEFAULTS": {},
    # Seconds a process trusts its cached parameters before re-reading them: the bound on how
    # long another process's change takes to be seen.
    "ALISMS_PARAMS_CACHE_SECONDS": 10.0,
    # Flask-Limiter storage for the send limits ("memory://", "redis://host:6379/0", ...).
    # None reuses the host's Limiter storage when one is passed, else "memory://".
    "ALISMS_LIMITER_STORAGE_URI": None,
    # When the limiter storage is unreachable, refuse sends (False) or let them through (True).
    "ALISMS_LIMITS_FAIL_OPEN": False,
    # Per-IP limits count an IPv6 client by its network of this many bits (a /64 is what one
    # home or phone usually gets), so one client cannot spread over its addresses.
    "ALISMS_IPV6_PREFIX": 64,
    # Seconds every send is answered 503 after Aliyun failed for all numbers alike (see the
    # README's Security section); then one real send probes it again.
    "ALISMS_PROVIDER_COOLDOWN": 30.0,
    # With memory:// limits, the most subjects (numbers, IPs) one rule holds in a process;
    # a new one beyond it is refused until older windows expire (README: "Limits").
    "ALISMS_LIMITS_MEMORY_MAX_KEYS": 100_000,
    # Where verification codes are kept: "database" or a Redis URL (redis://, rediss://,
    # unix://, redis+cluster://host:port,host:port, redis+sentinel://host:port/service).
    "ALISMS_CODE_STORAGE": "database",
    # Password rules for registration and reset.
    "ALISMS_PASSWORD_MIN_LENGTH": 8,
    "ALISMS_PASSWORD_MAX_LENGTH": 128,
    # Where the HTML flows go after success; only local paths are accepted.
    "ALISMS_REGISTER_REDIRECT": "/",
    "ALISMS_RESET_REDIRECT": "/",
    # Where the panel sends visitors who are not signed in (with ?next=): an endpoint such as
    # "login" or a local path such as "/login". None uses Flask-Login's login_view when set.
    "ALISMS_LOGIN_VIEW": None,
    "ALISMS_LOGIN_REDIRECT": "/",
    # Serve the admin panel and the end-user pages (the JSON API is always on).
    "ALISMS_ADMIN_VIEWS": True,
    "ALISMS_USER_VIEWS": True,
    # Page language: None follows the browser's Accept-Language (or Flask-Babel's choice when
    # the host runs it); "en", "zh_Hans"/"zh-Hans"/"zh" or "zh_Hant"/"zh-TW"... forces one.
    "ALISMS_LANGUAGE": None,
    # Directories with <locale>/LC_MESSAGES/flask_alisms.mo, searched before the package's own:
    # a host adds a language or overrides a string there. Relative paths start at app.root_path.
    "ALISMS_TRANSLATION_DIRECTORIES": [],
    # The time zone the send log shows times in (an IANA name); stored times stay UTC.
    "ALISMS_TIMEZONE": "Asia/Shanghai",
    # Minutes after which an accepted SMS without a delivery receipt shows "no receipt".
    "ALISMS_RECEIPT_WAIT_MINUTES": 15,
    # The human check asked for before a code is sent while the parameter human_check.mode is
    # "always" or "adaptive": "image" (a local picture captcha, no keys needed), "turnstile"
    # (Cloudflare), "hcaptcha", or an import path "package.module:Class" of a HumanCheck.
    "ALISMS_HUMAN_CHECK": "image",
    # The widget's site key and secret, for "turnstile" and "hcaptcha".
    "ALISMS_HUMAN_CHECK_SITE_KEY": None,
    "ALISMS_HUMAN_CHECK_SECRET_KEY": None,
    # None uses the provider's siteverify URL; an http(s) URL points elsewhere (a test server).
    "ALISMS_HUMAN_CHECK_VERIFY_URL": None,
    # Seconds to wait for siteverify; past that the send is refused with 503.
    "ALISMS_HUMAN_CHECK_TIMEOUT": 5.0,
    # Seconds a challenge can be answered after it was shown.
    "ALISMS_HUMAN_CHECK_TTL": 180,
}


#: The URL schemes ALISMS_CODE_STORAGE accepts besides "database".
REDIS_CODE_SCHEMES = (
    "redis://",
    "rediss://",
    "unix://",
    "redis+cluster://",
    "redis+sentinel://",
)


def apply_defaults(config: Config) -> None:
    """Fill in every ``ALISMS_*`` key the host did not set."""
    for key, value in DEFAULTS.items():
        config.setdefault(key, value.copy() if isinstance(value, (dict, list)) else value)


def _positive_number(config: Config, key: str, *, allow_zero: bool = False) -> float:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{key} must be a number of seconds, got {value!r}.")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigurationError(f"{key} must be greater than zero, got {value!r}.")
    return float(value)


def validate(config: Config) -> None:
    """Refuse a configuration that cannot work, saying which key to fix and how."""
    prefix = config["ALISMS_URL_PREFIX"]
    if not isinstance(prefix, str) or not prefix.startswith("/") or prefix.endswith("/"):
        raise ConfigurationError(
            f"ALISMS_URL_PREFIX must start with '/' and not end with one, e.g. '/alisms'; "
            f"got {prefix!r}."
        )
    sender = config["ALISMS_SENDER"]
    if not isinstance(sender, str) or (sender not in SENDERS and ":" not in sender):
        raise ConfigurationError(
            f"ALISMS_SENDER must be one of {', '.join(SENDERS)} or 'package.module:Class'; "
            f"got {sender!r}."
        )
    endpoint = config["ALISMS_ENDPOINT"]
    if endpoint is not None and (not isinstance(endpoint, str) or not endpoint.strip()):
        raise ConfigurationError(
            "ALISMS_ENDPOINT must be 'host:port', 'http://host:port' or None for Alibaba Cloud."
        )
    for key in ("ALISMS_CONNECT_TIMEOUT", "ALISMS_READ_TIMEOUT", "ALISMS_REMOTE_CHECK_TIMEOUT"):
        _positive_number(config, key)
    _positive_number(config, "ALISMS_PARAMS_CACHE_SECONDS", allow_zero=True)
    _positive_number(config, "ALISMS_PROVIDER_COOLDOWN")
    prefix_bits = config["ALISMS_IPV6_PREFIX"]
    if isinstance(prefix_bits, bool) or not isinstance(prefix_bits, int) or not (
        16 <= prefix_bits <= 128
    ):
        raise ConfigurationError(
            "ALISMS_IPV6_PREFIX must be a whole number of bits from 16 to 128 (64 counts one "
            f"/64 network as one client); got {prefix_bits!r}."
        )
    if not isinstance(config["ALISMS_METRICS"], bool):
        raise ConfigurationError("ALISMS_METRICS must be True or False.")

    material = config["ALISMS_ENCRYPTION_KEY"] or config.get("SECRET_KEY")
    if not material:
        raise ConfigurationError(
            "flask-alisms needs key material to encrypt the AccessKey secret: set "
            "ALISMS_ENCRYPTION_KEY (or SECRET_KEY) to a long random string."
        )
    fallbacks = config["ALISMS_ENCRYPTION_KEY_FALLBACKS"]
    if isinstance(fallbacks, (str, bytes)) or not all(
        isinstance(item, (str, bytes)) and item for item in fallbacks
    ):
        raise ConfigurationError(
            "ALISMS_ENCRYPTION_KEY_FALLBACKS must be a list of the previous key strings."
        )
    for key_name in ("ALISMS_PARAMS", "ALISMS_PARAM_DEFAULTS"):
        if not isinstance(config[key_name], Mapping):
            raise ConfigurationError(
                f"{key_name} must be a dict of parameter name to value, e.g. "
                "{'aliyun.sms.sign_name': 'MyShop'}."
            )
    storage = config["ALISMS_CODE_STORAGE"]
    if not isinstance(storage, str) or not (
        storage == "database" or storage.startswith(REDIS_CODE_SCHEMES)
    ):
        raise ConfigurationError(
            "ALISMS_CODE_STORAGE must be 'database' or a redis://, redis+cluster:// or "
            f"redis+sentinel:// URL; got {storage!r}."
        )
    max_keys = config["ALISMS_LIMITS_MEMORY_MAX_KEYS"]
    if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
        raise ConfigurationError(
            f"ALISMS_LIMITS_MEMORY_MAX_KEYS must be a whole number >= 1; got {max_keys!r}."
        )
    low, high = config["ALISMS_PASSWORD_MIN_LENGTH"], config["ALISMS_PASSWORD_MAX_LENGTH"]
    if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
        raise ConfigurationError(
            "ALISMS_PASSWORD_MIN_LENGTH and ALISMS_PASSWORD_MAX_LENGTH must be whole numbers "
            f"with 1 <= min <= max; got {low!r} and {high!r}."
        )
    for key_name in ("ALISMS_REGISTER_REDIRECT", "ALISMS_RESET_REDIRECT", "ALISMS_LOGIN_REDIRECT"):
        target = config[key_name]
        if not isinstance(target, str) or not target.startswith("/") or target.startswith("//"):
            raise ConfigurationError(f"{key_name} must be a local path such as '/'.")
    login_view = config["ALISMS_LOGIN_VIEW"]
    if login_view is not None and (
        not isinstance(login_view, str)
        or not login_view.strip()
        or login_view != login_view.strip()
        or login_view.startswith("//")
        or "://" in login_view
    ):
        raise ConfigurationError(
            "ALISMS_LOGIN_VIEW must be None, an endpoint name such as 'login' or a local path "
            f"such as '/login'; got {login_view!r}."
        )
    _validate_languages(config)
    _validate_receipts(config)


def _validate_receipts(config: Config) -> None:
    name = config["ALISMS_TIMEZONE"]
    try:
        if not isinstance(name, str) or not name:
            raise ValueError(name)
        zoneinfo.ZoneInfo(name)
    except (ValueError, OSError, zoneinfo.ZoneInfoNotFoundError):
        raise ConfigurationError(
            f"ALISMS_TIMEZONE must be an IANA time zone name such as 'Asia/Shanghai' or 'UTC'; "
            f"got {name!r}."
        ) from None
    wait = config["ALISMS_RECEIPT_WAIT_MINUTES"]
    if isinstance(wait, bool) or not isinstance(wait, int) or not 1 <= wait <= 4320:
        raise ConfigurationError(
            f"ALISMS_RECEIPT_WAIT_MINUTES must be a whole number of minutes from 1 to 4320; "
            f"got {wait!r}."
        )
    _validate_human_check(config)


def _validate_languages(config: Config) -> None:
    directories = config["ALISMS_TRANSLATION_DIRECTORIES"]
    if not isinstance(directories, (list, tuple)) or not all(
        isinstance(item, (str, os.PathLike)) and str(item) for item in directories
    ):
        raise ConfigurationError(
            "ALISMS_TRANSLATION_DIRECTORIES must be a list of directory paths, e.g. "
            "['translations']."
        )
    language = config["ALISMS_LANGUAGE"]
    if language is None:
        return
    available = i18n.available_locales(
        tuple(os.path.join(config.root_path, os.fspath(item)) for item in directories)
    )
    if not isinstance(language, str) or i18n.normalise(language, available) is None:
        raise ConfigurationError(
            f"ALISMS_LANGUAGE must be None (follow the browser) or one of "
            f"{', '.join(available)} (tags such as 'zh-TW' work too); got {language!r}."
        )


def _validate_human_check(config: Config) -> None:
    name = config["ALISMS_HUMAN_CHECK"]
    if not isinstance(name, str) or (name not in HUMAN_CHECKS and ":" not in name):
        raise ConfigurationError(
            f"ALISMS_HUMAN_CHECK must be one of {', '.join(HUMAN_CHECKS)} or "
            f"'package.module:Class'; got {name!r}."
        )
    if name in ("turnstile", "hcaptcha"):
        for key in ("ALISMS_HUMAN_CHECK_SITE_KEY", "ALISMS_HUMAN_CHECK_SECRET_KEY"):
            value = config[key]
            if not isinstance(value, str) or not value.strip():
                raise ConfigurationError(
                    f"ALISMS_HUMAN_CHECK={name!r} needs {key}: copy it from the provider's "
                    "dashboard."
                )
    url = config["ALISMS_HUMAN_CHECK_VERIFY_URL"]
    if url is not None and not (
        isinstance(url, str) and url.startswith(("https://", "http://")) and url.isprintable()
    ):
        raise ConfigurationError(
            "ALISMS_HUMAN_CHECK_VERIFY_URL must be None (the provider's own) or an http(s) URL."
        )
    _positive_number(config, "ALISMS_HUMAN_CHECK_TIMEOUT")
    ttl = config["ALISMS_HUMAN_CHECK_TTL"]
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 30 <= ttl <= 3600:
        raise ConfigurationError(
            f"ALISMS_HUMAN_CHECK_TTL must be whole seconds from 30 to 3600; got {ttl!r}."
        )
