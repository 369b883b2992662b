"""The English/Chinese catalogue: complete for every page string, and the language choice."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from flask import Blueprint, Flask, render_template_string
from jinja2 import Environment, nodes

import flask_alisms
from flask_alisms import i18n
from flask_alisms.i18n import ZH, translate

PACKAGE = Path(flask_alisms.__file__).parent
TEMPLATES = sorted((PACKAGE / "templates").rglob("*.html"))
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def template_strings() -> list[tuple[str, str]]:
    """(template, text) for every ``_("literal", ...)`` call in the package's templates."""
    env = Environment(autoescape=True)
    found = []
    for path in TEMPLATES:
        tree = env.parse(path.read_text(encoding="utf-8"))
        for call in tree.find_all(nodes.Call):
            if not (isinstance(call.node, nodes.Name) and call.node.name == "_"):
                continue
            if call.args and isinstance(call.args[0], nodes.Const):
                found.append((str(path.relative_to(PACKAGE)), call.args[0].value))
    return found


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _text(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


# Which positional argument of a call carries text a page shows.
SHOWN_ARGUMENT = {
    "flash": 0,
    "ValidationError": 0,
    "ValueError": 0,
    "AccountError": 1,
    "InvalidPhone": 1,
    "InvalidParameter": 1,
}


def python_strings() -> set[str]:
    """Fixed messages the Python side hands to the pages, found by reading the modules."""
    found: set[str] = set()
    for module in ("views", "accounts", "phones", "errors", "forms", "settings"):
        tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = _name(node.func)
                index = SHOWN_ARGUMENT.get(name)
                if index is not None and len(node.args) > index:
                    found.add(_text(node.args[index]) or "")
                if name.endswith("Field") and node.args:  # form field labels
                    found.add(_text(node.args[0]) or "")
                if name == "Parameter" and len(node.args) >= 6:  # label and help
                    found.update(_text(arg) or "" for arg in node.args[4:6])
                for keyword in node.keywords:
                    if keyword.arg == "pattern_hint":
                        found.add(_text(keyword.value) or "")
                    if keyword.arg == "choices" and isinstance(keyword.value, ast.List):
                        for choice in keyword.value.elts:
                            if isinstance(choice, ast.Tuple) and len(choice.elts) == 2:
                                found.add(_text(choice.elts[1]) or "")
                    if keyword.arg in ("title", "message") and name == "render_template":
                        found.add(_text(keyword.value) or "")
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values):
                    if _text(key) in ("label", "help"):
                        found.add(_text(value) or "")
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if not isinstance(target, ast.Name):
                    continue
                if target.id.startswith("USER_"):
                    found.add(_text(node.value) or "")
                if target.id in ("GATE_MESSAGES", "GROUPS") and isinstance(node.value, ast.Dict):
                    found.update(_text(value) or "" for value in node.value.values)
            elif isinstance(node, ast.Return) and module == "accounts":
                found.add(_text(node.value) or "")
    found.discard("")
    return found


def test_the_templates_use_the_catalogue() -> None:
    strings = template_strings()
    assert len(TEMPLATES) >= 7
    assert len(strings) > 50


@pytest.mark.parametrize(
    ("template", "text"), sorted(set(template_strings())), ids=lambda value: value[:40]
)
def test_every_template_string_has_a_chinese_entry(template: str, text: str) -> None:
    assert text in ZH, f"{template}: add {text!r} to flask_alisms.i18n.ZH"


def test_every_message_from_the_python_side_translates() -> None:
    strings = python_strings()
    assert "Registration by phone is closed on this site." in strings
    assert "Signature name" in strings
    missing = sorted(text for text in strings if translate(text, "zh") == text and text not in ZH)
    assert missing == []


@pytest.mark.parametrize("english", sorted(ZH))
def test_translations_keep_the_placeholders(english: str) -> None:
    assert sorted(PLACEHOLDER.findall(ZH[english])) == sorted(PLACEHOLDER.findall(english))
    assert ZH[english].strip() == ZH[english] and ZH[english]


@pytest.mark.parametrize(
    ("english", "expected"),
    [
        ("Too many codes were requested. Try again in 42 seconds.", "42 秒后再试"),
        (
            "Saved: sms.code_ttl, limits.resend_interval.",
            "已保存：sms.code_ttl, limits.resend_interval。",
        ),
        ("Fill in these parameters first: aliyun.sms.sign_name.", "aliyun.sms.sign_name"),
        ("Use at least 8 characters.", "8 个字符"),
        ("must be at least 60", "不能小于 60"),
        ("must be at most 64 characters", "最多 64 个字符"),
        ("Field cannot be longer than 8 characters.", "不能超过 8 个字符"),
        ("Signature name (aliyun.sms.sign_name)", "签名名称（aliyun.sms.sign_name）"),
        ("Registration allowed (server.allow_user_register)", "允许注册（"),
    ],
)
def test_messages_built_at_run_time_translate(english: str, expected: str) -> None:
    assert expected in translate(english, "zh")
    assert translate(english, "en") == english


def test_gettext_formats_and_falls_back_to_english() -> None:
    assert translate("Send again in %(seconds)ss", "zh", seconds=9) == "9 秒后可重新发送"
    assert translate("Send again in %(seconds)ss", "en", seconds=9) == "Send again in 9s"
    # Without arguments the template comes back unformatted, for the countdown script.
    assert translate("Send again in %(seconds)ss", "zh") == "%(seconds)s 秒后可重新发送"
    assert translate("Not in the catalogue", "zh") == "Not in the catalogue"
    assert translate("Broken %(nope)s", "zh", other=1) == "Broken %(nope)s"
    assert translate(None, "zh") == ""


# -- the language choice, on a tiny app that only installs the catalogue -------------------------

PAGE = (
    "{{ alisms_lang }}|{{ _('Send code') }}|{{ _('Page %(page)s of %(pages)s', page=2, pages=5) }}"
)


def make_app(language: str | None = None) -> Flask:
    app = Flask(__name__)
    app.config["ALISMS_LANGUAGE"] = language
    bp = Blueprint("alisms", __name__)
    i18n.install(bp)

    @bp.get("/page")
    def page() -> str:
        return render_template_string(PAGE)

    @bp.get("/escaped")
    def escaped() -> str:
        return render_template_string("{{ _('<b>%(name)s</b>', name='<i>') }}")

    app.register_blueprint(bp)

    @app.get("/host")
    def host_page() -> str:
        # The host's own templates keep their own `_` (or none): the catalogue stays inside.
        return render_template_string("{{ _ is defined }}")

    return app


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "en|Send code|Page 2 of 5"),
        ("en-US,en;q=0.9", "en|Send code|Page 2 of 5"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh|获取验证码|第 2 / 5 页"),
        ("zh", "zh|获取验证码|第 2 / 5 页"),
        ("zh-Hans", "zh|获取验证码|第 2 / 5 页"),
        ("zh-TW", "zh|获取验证码|第 2 / 5 页"),
        ("en;q=0.5,zh-CN;q=0.9", "zh|获取验证码|第 2 / 5 页"),
        ("fr-FR,de;q=0.8", "en|Send code|Page 2 of 5"),
    ],
)
def test_language_follows_the_browser(header: str | None, expected: str) -> None:
    client = make_app().test_client()
    headers = {"Accept-Language": header} if header else {}
    response = client.get("/page", headers=headers)
    assert response.get_data(as_text=True) == expected
    assert "Accept-Language" in response.headers.get("Vary", "")


@pytest.mark.parametrize(
    ("language", "expected"), [("zh", "zh|获取验证码"), ("en", "en|Send code")]
)
def test_configured_language_wins_over_the_browser(language: str, expected: str) -> None:
    client = make_app(language).test_client()
    other = "en" if language == "zh" else "zh-CN"
    response = client.get("/page", headers={"Accept-Language": other})
    assert response.get_data(as_text=True).startswith(expected)
    assert "Accept-Language" not in response.headers.get("Vary", "")


def test_translated_text_is_escaped() -> None:
    body = make_app().test_client().get("/escaped").get_data(as_text=True)
    assert body == "&lt;b&gt;&lt;i&gt;&lt;/b&gt;"


def test_the_catalogue_stays_out_of_the_host_templates() -> None:
    assert make_app().test_client().get("/host").get_data(as_text=True) == "False"


def test_python_callers_get_the_same_choice() -> None:
    app = make_app()
    assert i18n.current_language() == "en"  # no app, no request
    assert i18n.gettext("Send code") == "Send code"
    with app.test_request_context(headers={"Accept-Language": "zh-CN"}):
        assert i18n.current_language() == "zh"
        assert i18n.gettext("Send code") == "获取验证码"
    app.config["ALISMS_LANGUAGE"] = "zh"
    with app.app_context():
        assert i18n.current_language() == "zh"
