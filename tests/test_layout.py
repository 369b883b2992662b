"""The package's layout as contributors and hosts rely on it.

Old 0.1 import paths still work and warn; new paths import quietly; modules stay small and the
import graph acyclic; a host can replace or wrap a view, swap a template, and raise ApiError
from its own API view; the README's replacement example runs as printed.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grimp
import pytest
import sqlalchemy as sa
from flask import Flask, make_response, request
from flask_sqlalchemy import SQLAlchemy

from flask_alisms import AliSMS, SQLAlchemyUserAdapter
from flask_alisms._compat import MOVED
from flask_alisms.web import api, pages
from flask_alisms.web.http import ApiError

from .conftest import Host

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "flask_alisms"
MAX_LINES = 450
#: Modules that are mostly a data table, which reads best in one piece.
LONG_DATA_MODULES = {
    "sms/advice.py": "the table of Aliyun error codes and their advice",
}

# --------------------------------------------------------------------------- import paths

#: (old module, a name it exported in 0.1, the module that owns the name now)
OLD_IMPORTS = [
    ("sender", "MemorySender", "flask_alisms.sms"),
    ("sender", "AliyunSender", "flask_alisms.sms"),
    ("errors", "explain", "flask_alisms.sms.advice"),
    ("errors", "ConfigurationError", "flask_alisms.exceptions"),
    ("settings", "ParameterStore", "flask_alisms.parameters"),
    ("codes", "CodeStore", "flask_alisms.flows.codes"),
    ("limits", "Throttle", "flask_alisms.flows.throttle"),
    ("verification", "check_gate", "flask_alisms.flows.verification"),
    ("accounts", "AccountResult", "flask_alisms.flows.accounts"),
    ("views", "create_blueprint", "flask_alisms.web"),
    ("forms", "RegisterForm", "flask_alisms.web.forms"),
    ("pytest_plugin", "dysmsapi_emulator", "flask_alisms.testing.pytest_plugin"),
]


@pytest.fixture
def fresh_old_module() -> Iterator[None]:
    """Forget the old module names, so importing one runs the finder (and warns) again."""
    saved = {f"flask_alisms.{old}": sys.modules.pop(f"flask_alisms.{old}", None) for old in MOVED}
    yield
    for name, module in saved.items():
        sys.modules.pop(name, None)
        if module is not None:
            sys.modules[name] = module


def test_every_moved_module_is_covered() -> None:
    assert {old for old, _, _ in OLD_IMPORTS} == set(MOVED)


@pytest.mark.parametrize(("old", "name", "new"), OLD_IMPORTS)
def test_old_import_path_works_and_warns(
    fresh_old_module: None, old: str, name: str, new: str
) -> None:
    with pytest.warns(DeprecationWarning, match=re.escape(new)) as caught:
        module = importlib.import_module(f"flask_alisms.{old}")
    assert f"flask_alisms.{old} moved to" in str(caught[0].message)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_from_import_of_old_paths(fresh_old_module: None) -> None:
    with pytest.warns(DeprecationWarning, match=r"flask_alisms\.sms\b"):
        from flask_alisms.sender import MemorySender
    with pytest.warns(DeprecationWarning, match=r"flask_alisms\.sms\.advice and "):
        from flask_alisms.errors import ConfigurationError, explain
    with pytest.warns(DeprecationWarning, match=r"flask_alisms\.testing\.pytest_plugin"):
        import flask_alisms.pytest_plugin  # noqa: F401
    from flask_alisms.exceptions import ConfigurationError as NewConfigurationError
    from flask_alisms.sms import MemorySender as NewMemorySender
    from flask_alisms.sms.advice import explain as new_explain

    assert MemorySender is NewMemorySender
    assert ConfigurationError is NewConfigurationError
    assert explain is new_explain


def _public_modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__":
            continue  # running it starts a server
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_new_paths_import_without_our_warnings() -> None:
    """In a fresh interpreter, so that nothing is imported already."""
    script = (
        "import importlib, json, sys, warnings\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    for name in sys.argv[1:]:\n"
        "        importlib.import_module(name)\n"
        "print(json.dumps([str(w.message) for w in caught\n"
        "                  if 'flask_alisms' in str(w.message) or 'flask_alisms' in w.filename]))\n"
    )
    modules = _public_modules()
    assert "flask_alisms.testing.signing" in modules
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script, *modules],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_testing_package_loads_no_flask() -> None:
    script = (
        "import sys, flask_alisms.testing, flask_alisms.testing.pytest_plugin\n"
        "print(sorted(m for m in ('flask', 'sqlalchemy', 'aliyunsdkcore') if m in sys.modules))"
    )
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------- size and graph


def test_modules_stay_small() -> None:
    too_long = {}
    for path in PACKAGE.rglob("*.py"):
        name = path.relative_to(PACKAGE).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and name not in LONG_DATA_MODULES:
            too_long[name] = lines
    assert too_long == {}, f"split these modules by concern: {too_long}"


def test_no_import_cycles() -> None:
    """No module imports itself through others (import-linter checks packages; this, modules)."""
    graph = grimp.build_graph("flask_alisms", cache_dir=None)
    modules = {m for m in graph.modules if m != "flask_alisms._compat"}
    cycles = []
    for module in sorted(modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported in modules and graph.chain_exists(imported, module):
                cycles.append(graph.find_shortest_chain(imported, module))
    assert cycles == []


# --------------------------------------------------------------------------- host overrides


def test_host_replaces_a_view(host: Host) -> None:
    host.app.view_functions["alisms.register"] = lambda: "the site's own sign-up page"
    answer = host.client().get("/alisms/register")
    assert answer.status_code == 200
    assert answer.get_data(as_text=True) == "the site's own sign-up page"


def test_host_wraps_the_original_view(ready_host: Host) -> None:
    def register() -> Any:
        response = make_response(pages.register())
        response.headers["X-Site"] = "wrapped"
        return response

    ready_host.app.view_functions["alisms.register"] = register
    answer = ready_host.client().get("/alisms/register")
    assert answer.status_code == 200
    assert answer.headers["X-Site"] == "wrapped"
    assert 'name="csrf_token"' in answer.get_data(as_text=True)  # the package's page


def test_api_error_from_a_host_view_is_json(ready_host: Host) -> None:
    def api_register() -> Any:
        if request.headers.get("X-Invite") != "yes":
            raise ApiError(403, "invite_required", "Sign-up needs an invitation.")
        return api.api_register()

    ready_host.app.view_functions["alisms.api_register"] = api_register
    answer = ready_host.client().post("/alisms/api/register", json={})
    assert answer.status_code == 403
    assert answer.get_json() == {
        "error": "invite_required",
        "message": "Sign-up needs an invitation.",
    }
    # With the header the original runs, and its own checks answer (here: no CSRF token).
    answer = ready_host.client().post("/alisms/api/register", json={}, headers={"X-Invite": "yes"})
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "csrf_failed"


def test_host_template_replaces_the_package_template(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    (templates / "alisms").mkdir(parents=True)
    (templates / "alisms" / "register.html").write_text(
        "<h1>Join us</h1>{{ form.phone.label }}", encoding="utf-8"
    )
    app = Flask("template_host", template_folder=str(templates))
    app.config.update(
        SECRET_KEY="test-secret", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/db.sqlite"
    )
    db = SQLAlchemy(app)

    class User(db.Model):  # type: ignore[name-defined]
        __tablename__ = "template_host_user"
        id = sa.Column(sa.Integer, primary_key=True)
        phone = sa.Column(sa.String(32), unique=True, nullable=False)
        password_hash = sa.Column(sa.String(256), nullable=False)

    AliSMS(app, db=db, user_adapter=SQLAlchemyUserAdapter(db, User))
    with app.app_context():
        db.create_all()
    page = app.test_client().get("/alisms/register").get_data(as_text=True)
    assert page.startswith("<h1>Join us</h1><label")
    assert "/alisms/reset-password" not in page  # nothing of the package's own template
    with app.app_context():
        db.drop_all()
        db.engine.dispose()


def _readme_section(title: str) -> str:
    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    start = text.index(f"\n{title}\n")
    end = re.search(r"\n\n[^\n]+\n-{3,}\n", text[start + len(title) + 2 :])
    return text[start : start + len(title) + 2 + end.start()] if end else text[start:]


def test_readme_replacement_example_runs_as_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    section = _readme_section("Replacing a view, form or template")
    match = re.search(r"::\n\n((?:    .*\n|\n)+)", section)
    assert match, "no code block in the README section"
    code = "\n".join(line[4:] for line in match.group(1).splitlines())
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.rst", "exec"), {"__name__": "readme_example"})  # noqa: S102
