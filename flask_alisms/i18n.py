"""Translations for the extension's pages and messages: Babel catalogues, domain ``flask_alisms``.

The English text is the message id. The catalogues live in ``translations/<locale>/LC_MESSAGES``
under our own domain, so they never mix with a host's ``messages``. The language is Flask-Babel's
when the host runs it, else ``ALISMS_LANGUAGE``, else the browser's Accept-Language; outside a
request it is English. Each catalogue is read once per process (see :func:`catalogue`).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from babel.support import LazyProxy, NullTranslations, Translations
from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    has_app_context,
    has_request_context,
    request,
)

__all__ = [
    "DOMAIN",
    "LOCALES",
    "available_locales",
    "catalogue",
    "current_language",
    "current_locale",
    "gettext",
    "install",
    "language_tag",
    "lazy_gettext",
    "ngettext",
    "normalise",
]

logger = logging.getLogger(__name__)

#: The gettext domain of every catalogue (``flask_alisms.po`` / ``.mo``).
DOMAIN = "flask_alisms"
#: The directory holding the package's own catalogues.
DIRECTORY = Path(__file__).parent / "translations"
#: The locales the package ships; "en" is also the fallback.
LOCALES = ("en", "zh_Hans", "zh_Hant")

# Chinese regions and scripts: Traditional where it is written, Simplified otherwise.
_TRADITIONAL = frozenset({"hant", "tw", "hk", "mo"})
_cache: dict[tuple[tuple[str, ...], str], NullTranslations] = {}
_lock = threading.Lock()


def _directories() -> tuple[str, ...]:
    """The host's ``ALISMS_TRANSLATION_DIRECTORIES`` (searched first), then ours.

    Relative entries are relative to the app's root path, as Flask's own folders are.
    """
    extra: Iterable[Any] = ()
    if has_app_context():
        extra = current_app.config.get("ALISMS_TRANSLATION_DIRECTORIES") or ()
        extra = [os.path.join(current_app.root_path, os.fspath(item)) for item in extra]
    return (*extra, str(DIRECTORY))


def available_locales(directories: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Our locales plus every locale a host directory holds a ``flask_alisms.mo`` for."""
    return _scan(directories if directories is not None else _directories()[:-1])


@functools.lru_cache(maxsize=32)
def _scan(directories: tuple[str, ...]) -> tuple[str, ...]:
    """Looked up once per set of directories: the disk is not read per request."""
    found = list(LOCALES)
    for directory in directories:
        for path in sorted(Path(directory).glob(f"*/LC_MESSAGES/{DOMAIN}.mo")):
            locale = path.parent.parent.name
            if locale not in found:
                found.append(locale)
    return tuple(found)


def normalise(tag: str, available: Iterable[str] = LOCALES) -> str | None:
    """The available locale for a language tag or locale name, or None when none fits.

    Every Chinese tag becomes ``zh_Hans`` or ``zh_Hant`` ("zh" alone is Simplified), so a
    Taiwanese browser never gets Simplified text.
    """
    parts = tag.strip().replace("-", "_").lower().split("_")
    if not parts[0] or parts[0] == "*":
        return None
    if parts[0] == "zh":
        return "zh_Hant" if _TRADITIONAL.intersection(parts[1:]) else "zh_Hans"
    folded = {locale.lower(): locale for locale in available}
    return folded.get("_".join(parts)) or folded.get(parts[0])


def _babel_locale() -> str | None:
    """Flask-Babel's choice for this request, when the host initialised Flask-Babel."""
    if not (has_request_context() and "babel" in current_app.extensions):
        return None
    try:
        from flask_babel import get_locale  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - Flask-Babel vanished after init
        return None
    chosen = get_locale()
    return str(chosen) if chosen is not None else None


_REQUEST_LOCALE = "_alisms_locale"


def current_locale() -> str:
    """The locale of the current request: Flask-Babel's, ``ALISMS_LANGUAGE``, or the browser's."""
    if not has_app_context():
        return "en"
    chosen = _babel_locale()  # not kept: a host may switch it with Flask-Babel's force_locale
    if chosen is not None:
        return normalise(chosen, available_locales()) or "en"
    if not has_request_context():
        return _own_choice()
    # A page asks a few hundred times; the choice cannot change within a request.
    kept = g.get(_REQUEST_LOCALE)
    if kept is None:
        kept = _own_choice()
        setattr(g, _REQUEST_LOCALE, kept)
    return str(kept)


def _own_choice() -> str:
    """``ALISMS_LANGUAGE``, else the browser's first language we have, else English."""
    available = available_locales()
    forced = current_app.config.get("ALISMS_LANGUAGE")
    if forced:
        return normalise(str(forced), available) or "en"
    if has_request_context():
        for tag, _quality in request.accept_languages:
            locale = normalise(tag, available)
            if locale is not None:
                return locale
    return "en"


def language_tag(locale: str) -> str:
    """The BCP-47 tag for ``<html lang>``: ``zh_Hant`` -> ``zh-Hant``."""
    return locale.replace("_", "-")


def current_language() -> str:
    """The BCP-47 tag of :func:`current_locale`, e.g. ``en``, ``zh-Hans`` or ``zh-Hant``."""
    return language_tag(current_locale())


def _load(directory: str, locale: str) -> Translations | None:
    path = Path(directory) / locale / "LC_MESSAGES" / f"{DOMAIN}.mo"
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        return Translations(handle, domain=DOMAIN)


def catalogue(locale: str, directories: tuple[str, ...] | None = None) -> NullTranslations:
    """The merged catalogue for ``locale``: host directories first, ours as the fallback.

    Read from disk once per process for each (directories, locale): never per request.
    """
    key = (directories if directories is not None else _directories(), locale)
    found = _cache.get(key)
    if found is not None:
        return found
    with _lock:
        found = _cache.get(key)
        if found is None:
            found = NullTranslations()
            for directory in reversed(key[0]):
                loaded = _load(directory, locale)
                if loaded is not None:
                    loaded.add_fallback(found)
                    found = loaded
            _cache[key] = found
    return found


def _format(text: str, msgid: str, variables: dict[str, Any]) -> str:
    """``text % variables``; a translation whose placeholders do not fit falls back to English."""
    if not variables:
        return text
    for candidate in (text, msgid):
        try:
            return candidate % variables
        except (KeyError, ValueError, TypeError):
            logger.warning("Translation of %r does not fit %s", msgid, sorted(variables))
    return msgid


def gettext(msgid: str, **variables: Any) -> str:
    """``msgid`` in the current request's language, then ``%``-formatted with ``variables``.

    Without variables the text comes back unformatted, e.g. for a script's countdown template.
    """
    text = catalogue(current_locale()).gettext(msgid)
    return _format(text, msgid, variables)


def ngettext(singular: str, plural: str, num: int, **variables: Any) -> str:
    """The singular or plural form for ``num``, formatted with ``num`` and ``variables``."""
    text = catalogue(current_locale()).ngettext(singular, plural, num)
    return _format(text, singular if num == 1 else plural, {"num": num, **variables})


def lazy_gettext(msgid: str, **variables: Any) -> str:
    """Like :func:`gettext`, translated each time it is turned into text.

    For module-level labels and advice, which exist before any request has a language. Typed
    as ``str`` because it stands in for one everywhere (formatting, joining, templates).
    """
    return cast(str, LazyProxy(gettext, msgid, enable_cache=False, **variables))


def _template_globals() -> dict[str, Any]:
    """``_``, ``gettext``, ``ngettext`` and ``alisms_lang``, the locale worked out once."""
    locale = current_locale()
    translations = catalogue(locale)

    def _(msgid: str, **variables: Any) -> str:
        return _format(translations.gettext(msgid), msgid, variables)

    def _n(singular: str, plural: str, num: int, **variables: Any) -> str:
        text = translations.ngettext(singular, plural, num)
        return _format(text, singular if num == 1 else plural, {"num": num, **variables})

    return {"_": _, "gettext": _, "ngettext": _n, "alisms_lang": language_tag(locale)}


def _vary_on_language(response: Response) -> Response:
    """Pages chosen from Accept-Language must not be served from a cache to another browser."""
    if not current_app.config.get("ALISMS_LANGUAGE"):
        if "Vary" in response.headers:
            response.vary.add("Accept-Language")
        else:  # the usual case, without parsing and writing back a header set
            response.headers.add("Vary", "Accept-Language")
    return response


def install(bp: Blueprint) -> None:
    """Give the blueprint's templates ``_``, ``gettext``, ``ngettext`` and ``alisms_lang``.

    Registered for the blueprint's own requests only, so that a host's own ``_`` (Flask-Babel,
    for instance) keeps working in the host's templates.
    """
    bp.context_processor(_template_globals)
    bp.after_request(_vary_on_language)
