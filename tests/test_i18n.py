"""The gettext catalogues: complete, up to date with the code, and the language choice."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from flask import Blueprint, Flask, render_template_string

import example_app
import flask_alisms
from flask_alisms import i18n

PACKAGE = Path(flask_alisms.__file__).parent
ROOT = PACKAGE.parent
EXAMPLE = Path(example_app.__file__).parent
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "_l": None}
# (catalogue directory, babel.cfg, the directory the cfg's patterns start from)
CATALOGUES = [
    (PACKAGE / "translations", ROOT / "babel.cfg", ROOT),
    (EXAMPLE / "translations", EXAMPLE / "babel.cfg", EXAMPLE),
]
PERCENT = re.compile(r"%\((\w+)\)[sd]")
BRACES = re.compile(r"(?<!\{)\{(\w+)[^{}]*\}(?!\})")


def _msgid(message_id: object) -> str:
    return message_id[0] if isinstance(message_id, tuple) else str(message_id)


def _read_po(path: Path) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle)


def _placeholders(text: str) -> tuple[list[str], list[str]]:
    return sorted(PERCENT.findall(text)), sorted(BRACES.findall(text))


# -- (a) completeness ---------------------------------------------------------------------------


@pytest.mark.parametrize(("directory", "cfg", "base"), CATALOGUES, ids=["package", "example"])
@pytest.mark.parametrize("locale", ["zh_Hans", "zh_Hant"])
def test_every_message_is_translated_with_the_same_placeholders(
    directory: Path, cfg: Path, base: Path, locale: str
) -> None:
    template = {_msgid(m.id) for m in _read_po(directory / "flask_alisms.pot") if m.id}
    catalogue = _read_po(directory / locale / "LC_MESSAGES" / "flask_alisms.po")
    translated = {_msgid(m.id): m for m in catalogue if m.id}
    assert template <= set(translated), sorted(template - set(translated))
    for msgid in template:
        message = translated[msgid]
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(s and s.strip() == s for s in strings), msgid
        assert not message.fuzzy, msgid
        for string in strings:
            assert _placeholders(string) == _placeholders(msgid), (msgid, string)


def test_the_package_catalogue_is_big_enough() -> None:
    template = _read_po(PACKAGE / "translations" / "flask_alisms.pot")
    assert len([m for m in template if m.id]) > 250


def test_traditional_chinese_uses_taiwan_words() -> None:
    catalogue = _read_po(PACKAGE / "translations" / "zh_Hant" / "LC_MESSAGES" / "flask_alisms.po")
    text = "".join(str(m.string) for m in catalogue if m.id)
    for word in ("簡訊", "帳號", "密碼", "驗證碼", "手機號碼", "設定", "網路", "伺服器"):
        assert word in text, word
    for simplified in ("短信", "账号", "验证码", "设置", "网络", "服务器", "賬號", "程式碼"):
        assert simplified not in text, simplified


# -- (b) staleness ------------------------------------------------------------------------------


def _extracted(cfg: Path, base: Path) -> set[str]:
    from babel.messages.frontend import parse_mapping_cfg

    with cfg.open(encoding="utf-8") as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    return {
        _msgid(message)
        for _file, _line, message, _comments, _context in extract_from_dir(
            str(base), method_map, options_map, keywords=KEYWORDS
        )
        if message
    }


@pytest.mark.parametrize(("directory", "cfg", "base"), CATALOGUES, ids=["package", "example"])
def test_the_template_matches_the_code(directory: Path, cfg: Path, base: Path) -> None:
    """Fails when a string was added or changed without `pybabel extract` (see README)."""
    committed = {_msgid(m.id) for m in _read_po(directory / "flask_alisms.pot") if m.id}
    extracted = _extracted(cfg, base)
    assert extracted - committed == set(), "new strings: run pybabel extract and update"
    assert committed - extracted == set(), "stale strings: run pybabel extract and update"


@pytest.mark.parametrize(("directory", "cfg", "base"), CATALOGUES, ids=["package", "example"])
@pytest.mark.parametrize("locale", ["en", "zh_Hans", "zh_Hant"])
def test_the_compiled_catalogues_match_the_po_files(
    directory: Path, cfg: Path, base: Path, locale: str, tmp_path: Path
) -> None:
    folder = directory / locale / "LC_MESSAGES"
    fresh = tmp_path / "fresh.mo"
    with fresh.open("wb") as handle:
        write_mo(handle, _read_po(folder / "flask_alisms.po"))

    def messages(path: Path) -> dict[str, object]:
        with path.open("rb") as handle:
            return {_msgid(m.id): m.string for m in read_mo(handle) if m.id}

    assert messages(folder / "flask_alisms.mo") == messages(fresh), "run pybabel compile"


# -- (d) the language choice, on a tiny app that only installs the catalogue ---------------------

PAGE = (
    "{{ alisms_lang }}|{{ _('Send code') }}|{{ _('Saved: %(keys)s.', keys='a.b') }}"
)
EN = "en|Send code|Saved: a.b."
HANS = "zh-Hans|获取验证码|已保存：a.b。"
HANT = "zh-Hant|取得驗證碼|已儲存：a.b。"


def make_app(**config: object) -> Flask:
    app = Flask(__name__)
    app.config["ALISMS_LANGUAGE"] = None
    app.config.update(config)
    bp = Blueprint("alisms", __name__)
    i18n.install(bp)

    @bp.get("/page")
    def page() -> str:
        return render_template_string(PAGE)

    @bp.get("/escaped")
    def escaped() -> str:
        return render_template_string("{{ _('<b>%(name)s</b>', name='<i>') }}")

    @bp.get("/plural")
    def plural() -> str:
        return render_template_string("{{ ngettext('%(num)s day', '%(num)s days', 3) }}")

    app.register_blueprint(bp)

    @app.get("/host")
    def host_page() -> str:
        # The host's own templates keep their own `_` (or none): the catalogue stays inside.
        return render_template_string("{{ _ is defined }}")

    return app


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, EN),
        ("en-US,en;q=0.9", EN),
        ("zh-CN,zh;q=0.9,en;q=0.8", HANS),
        ("zh", HANS),
        ("zh-Hans", HANS),
        ("zh-SG", HANS),
        ("zh-TW", HANT),
        ("zh-HK,en;q=0.5", HANT),
        ("zh-MO", HANT),
        ("zh-Hant-TW", HANT),
        ("en;q=0.5,zh-CN;q=0.9", HANS),
        ("en;q=0.5,zh-TW;q=0.9", HANT),
        ("fr-FR,de;q=0.8", EN),
        ("fr-FR,zh-TW;q=0.3", HANT),
    ],
)
def test_language_follows_the_browser(header: str | None, expected: str) -> None:
    client = make_app().test_client()
    headers = {"Accept-Language": header} if header else {}
    response = client.get("/page", headers=headers)
    assert response.get_data(as_text=True) == expected
    assert "Accept-Language" in response.headers.get("Vary", "")


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("zh", HANS),
        ("zh_Hans", HANS),
        ("zh-CN", HANS),
        ("zh_Hant", HANT),
        ("zh-TW", HANT),
        ("zh-Hant", HANT),
        ("en", EN),
    ],
)
def test_configured_language_wins_over_the_browser(language: str, expected: str) -> None:
    client = make_app(ALISMS_LANGUAGE=language).test_client()
    other = "en" if language.startswith("zh") else "zh-CN"
    response = client.get("/page", headers={"Accept-Language": other})
    assert response.get_data(as_text=True) == expected
    assert "Accept-Language" not in response.headers.get("Vary", "")


def test_translated_text_is_escaped() -> None:
    body = make_app().test_client().get("/escaped").get_data(as_text=True)
    assert body == "&lt;b&gt;&lt;i&gt;&lt;/b&gt;"


def test_templates_have_ngettext() -> None:
    assert make_app().test_client().get("/plural").get_data(as_text=True) == "3 days"


def test_the_catalogue_stays_out_of_the_host_templates() -> None:
    assert make_app().test_client().get("/host").get_data(as_text=True) == "False"


def test_python_callers_get_the_same_choice() -> None:
    app = make_app()
    assert i18n.current_locale() == "en"  # no app, no request
    assert i18n.gettext("Send code") == "Send code"
    with app.test_request_context(headers={"Accept-Language": "zh-CN"}):
        assert i18n.current_locale() == "zh_Hans"
        assert i18n.current_language() == "zh-Hans"
        assert i18n.gettext("Send code") == "获取验证码"
    with app.test_request_context(headers={"Accept-Language": "zh-TW"}):
        assert i18n.gettext("Send code") == "取得驗證碼"
    app.config["ALISMS_LANGUAGE"] = "zh_Hant"
    with app.app_context():
        assert i18n.current_locale() == "zh_Hant"


def test_gettext_formats_and_falls_back_to_english() -> None:
    app = make_app(ALISMS_LANGUAGE="zh")
    with app.app_context():
        assert i18n.gettext("Send again in %(seconds)ss", seconds=9) == "9 秒后可重新发送"
        # Without arguments the template comes back unformatted, for the countdown script.
        assert i18n.gettext("Send again in %(seconds)ss") == "%(seconds)s 秒后可重新发送"
        assert i18n.gettext("Not in the catalogue") == "Not in the catalogue"
        assert i18n.gettext("Broken %(nope)s", other=1) == "Broken %(nope)s"


def test_lazy_strings_translate_when_shown() -> None:
    label = i18n.lazy_gettext("Send code")
    app = make_app()
    with app.test_request_context(headers={"Accept-Language": "zh-TW"}):
        assert str(label) == "取得驗證碼"
    with app.test_request_context(headers={"Accept-Language": "zh-CN"}):
        assert f"{label}" == "获取验证码"
    assert str(label) == "Send code"


def test_advice_translates_then_formats() -> None:
    from flask_alisms.sms import explain

    advice = explain("InvalidTimeStamp.Skewed")
    app = make_app()
    with app.test_request_context(headers={"Accept-Language": "zh-TW"}):
        assert "（InvalidTimeStamp.Skewed）" in str(advice.admin_message)
        assert "時鐘" in str(advice.admin_message)
    with app.test_request_context(headers={"Accept-Language": "zh-CN"}):
        assert "时钟" in str(advice.admin_message)
        assert str(advice.user_message) == "暂时无法发送短信，请稍后再试。"
    assert "(InvalidTimeStamp.Skewed)" in str(advice.admin_message)


def test_catalogues_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    loads: list[str] = []
    real = i18n._load

    def counting(directory: str, locale: str) -> object:
        loads.append(locale)
        return real(directory, locale)

    monkeypatch.setattr(i18n, "_load", counting)
    monkeypatch.setattr(i18n, "_cache", {})
    client = app.test_client()
    for _ in range(3):
        client.get("/page", headers={"Accept-Language": "zh-TW"})
    assert loads.count("zh_Hant") == 1


# -- Flask-Babel and a host's own catalogues ---------------------------------------------------


def test_flask_babel_chooses_the_locale_when_the_host_runs_it() -> None:
    from flask_babel import Babel

    app = make_app(ALISMS_LANGUAGE="zh")  # Flask-Babel's choice wins over ours
    chosen = {"locale": "zh_Hant_TW"}
    Babel(app, locale_selector=lambda: chosen["locale"])
    client = app.test_client()
    assert client.get("/page", headers={"Accept-Language": "en"}).get_data(as_text=True) == HANT
    chosen["locale"] = "en"
    assert client.get("/page", headers={"Accept-Language": "zh-CN"}).get_data(as_text=True) == EN
    chosen["locale"] = "zh_CN"
    assert client.get("/page").get_data(as_text=True) == HANS


def _write_catalogue(directory: Path, locale: str, messages: dict[str, str]) -> None:
    catalogue = Catalog(locale=locale, domain=i18n.DOMAIN)
    for msgid, string in messages.items():
        catalogue.add(msgid, string)
    folder = directory / locale / "LC_MESSAGES"
    folder.mkdir(parents=True)
    with (folder / f"{i18n.DOMAIN}.mo").open("wb") as handle:
        write_mo(handle, catalogue)


def test_a_host_adds_a_language_and_overrides_a_string(tmp_path: Path) -> None:
    _write_catalogue(tmp_path, "ja", {"Send code": "コードを送信"})
    _write_catalogue(tmp_path, "zh_Hans", {"Send code": "发送验证码"})
    app = make_app(ALISMS_TRANSLATION_DIRECTORIES=[str(tmp_path)])
    client = app.test_client()
    japanese = client.get("/page", headers={"Accept-Language": "ja-JP,en;q=0.5"})
    # Strings the host did not translate stay English, the language's own fallback.
    assert japanese.get_data(as_text=True) == "ja|コードを送信|Saved: a.b."
    simplified = client.get("/page", headers={"Accept-Language": "zh-CN"})
    assert simplified.get_data(as_text=True) == "zh-Hans|发送验证码|已保存：a.b。"
    # Without the directory, Japanese is not offered.
    plain = make_app().test_client().get("/page", headers={"Accept-Language": "ja"})
    assert plain.get_data(as_text=True) == EN
    forced = make_app(ALISMS_LANGUAGE="ja", ALISMS_TRANSLATION_DIRECTORIES=[str(tmp_path)])
    with forced.app_context():
        assert i18n.gettext("Send code") == "コードを送信"


@pytest.mark.parametrize(
    ("language", "ok"),
    [(None, True), ("en", True), ("zh", True), ("zh-TW", True), ("zh_Hant", True), ("fr", False)],
)
def test_the_language_setting_is_validated(language: str | None, ok: bool) -> None:
    from flask import Config

    from flask_alisms.config import DEFAULTS, validate
    from flask_alisms.exceptions import ConfigurationError

    config = Config(str(ROOT))
    config.update(DEFAULTS, SECRET_KEY="x", ALISMS_LANGUAGE=language)
    if ok:
        validate(config)
    else:
        with pytest.raises(ConfigurationError, match="ALISMS_LANGUAGE"):
            validate(config)


@pytest.mark.parametrize("directories", ["translations", [""], [1], None])
def test_the_translation_directories_are_validated(directories: object) -> None:
    from flask import Config

    from flask_alisms.config import DEFAULTS, validate
    from flask_alisms.exceptions import ConfigurationError

    config = Config(str(ROOT))
    config.update(DEFAULTS, SECRET_KEY="x", ALISMS_TRANSLATION_DIRECTORIES=directories)
    with pytest.raises(ConfigurationError, match="ALISMS_TRANSLATION_DIRECTORIES"):
        validate(config)
