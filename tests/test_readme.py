"""Every snippet of README.rst runs as printed, so the README cannot drift from the code.

Each literal block (a paragraph ending in ``::``) is followed by a comment saying how it runs:

- ``.. readme-test: python``: a script, run with Python in an empty directory;
- ``.. readme-test: file NAME SESSION``: saved as NAME in the SESSION's directory;
- ``.. readme-test: shell SESSION``: bash commands, run in the SESSION's directory, one script
  per session, with ``flask`` and ``python`` of the Python under test first on ``PATH``;
  SESSION ``checkout`` runs in a temporary copy of the repository instead;
- ``.. readme-test: server SESSION``: a command that serves the site: started in the
  background in the same script (``FLASK_RUN_PORT`` picks a free port), then probed;
- ``.. readme-test: pytest NAME``: saved as NAME and run with pytest;
- ``.. readme-test: install``: installs packages; ``.ci/wheel-check`` runs the install (from
  the built wheel) and then this file with ``ALISMS_TEST_README_PYTHON`` pointing at it;
- ``.. readme-test: skip REASON``.

The environment of the snippets is the test's, cleaned of ``FLASK_*``/``ALISMS_*`` and proxy
variables, as a fresh shell would be.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest

from flask_alisms.web.openapi import rst_table

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.rst"
PYTHON = os.environ.get("ALISMS_TEST_README_PYTHON") or sys.executable
KINDS = ("python", "file", "shell", "server", "pytest", "install", "skip")


class Snippet(NamedTuple):
    line: int
    text: str
    kind: str
    args: list[str]


def snippets(text: str | None = None) -> list[Snippet]:
    """The README's literal blocks, each with the directive that follows it."""
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    found = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not (line.rstrip().endswith("::") and not line.lstrip().startswith("..")):
            index += 1
            continue
        start = index + 1
        body: list[str] = []
        index = start
        while index < len(lines) and (not lines[index].strip() or lines[index].startswith(" ")):
            body.append(lines[index])
            index += 1
        while index < len(lines) and not lines[index].strip():
            index += 1
        directive = lines[index] if index < len(lines) else ""
        match = re.match(r"\.\. readme-test: (\w+)\s*(.*)$", directive)
        kind, args = (match.group(1), match.group(2).split()) if match else ("", [])
        code = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
        found.append(Snippet(start, code, kind, args))
    return found


def _environment(tmp: Path, **extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("FLASK_", "ALISMS_"))
        and name.lower() not in ("http_proxy", "https_proxy", "all_proxy")
        and name not in ("DATABASE_URL", "REDIS_URL", "PYTHONPATH")
    }
    bin_dir = str(Path(PYTHON).parent)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(tmp)
    env.update(extra)
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 180) -> str:
    done = subprocess.run(  # noqa: S603 - our own commands
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = f"$ {' '.join(args)}\n{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, output
    return output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_busy(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- the directives themselves ------------------------------------------------------------------


def test_every_snippet_says_how_it_runs() -> None:
    found = snippets()
    assert len(found) >= 10
    for snippet in found:
        assert snippet.kind in KINDS, f"README.rst line {snippet.line}: no readme-test comment"
        if snippet.kind in ("file", "pytest"):
            assert snippet.args, f"README.rst line {snippet.line}: which file?"
        if snippet.kind == "skip":
            assert len(snippet.args) >= 3, f"README.rst line {snippet.line}: say why"


def test_parser_finds_a_block_without_a_directive() -> None:
    text = (
        "Intro::\n\n    print(1)\n\nNext paragraph.\n\nRun::\n\n    ls\n\n.. readme-test: shell s\n"
    )
    first, second = snippets(text)
    assert (first.kind, first.text) == ("", "print(1)\n")
    assert (second.kind, second.args, second.text) == ("shell", ["s"], "ls\n")


def test_api_table_is_the_generated_one() -> None:
    text = README.read_text(encoding="utf-8")
    table = text.split(".. begin generated API table\n\n", 1)[1].split("\n\n.. end", 1)[0]
    assert table == rst_table(), "regenerate it with flask_alisms.web.openapi.rst_table()"


# -- running them -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "snippet",
    [s for s in snippets() if s.kind == "python"],
    ids=lambda s: f"line{s.line}",
)
def test_python_snippet(snippet: Snippet, tmp_path: Path) -> None:
    (tmp_path / "snippet.py").write_text(snippet.text, encoding="utf-8")
    _run([PYTHON, "snippet.py"], tmp_path, _environment(tmp_path))


@pytest.mark.parametrize(
    "snippet",
    [s for s in snippets() if s.kind == "pytest"],
    ids=lambda s: s.args[0],
)
def test_pytest_snippet(snippet: Snippet, tmp_path: Path) -> None:
    (tmp_path / snippet.args[0]).write_text(snippet.text, encoding="utf-8")
    output = _run(
        [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", snippet.args[0]],
        tmp_path,
        _environment(tmp_path),
    )
    assert " passed" in output and "failed" not in output.split("$", 2)[1].split("\n", 2)[-1]


def test_checkout_shell_snippets(tmp_path: Path) -> None:
    """The translation commands, on a copy of the repository (they rewrite catalogues)."""
    blocks = [s for s in snippets() if s.kind == "shell" and s.args == ["checkout"]]
    assert blocks
    copy = tmp_path / "checkout"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", "*.egg-info", "__pycache__", "instance", "test-artifacts", "docs", ".venv"
        ),
    )
    for block in blocks:
        script = "set -euo pipefail\n" + block.text
        _run(["bash", "-c", script], copy, _environment(tmp_path))
    assert (copy / "translations" / "ja" / "LC_MESSAGES" / "flask_alisms.mo").exists()


PROBE = r"""
import http.cookiejar, re, sys, time, urllib.error, urllib.parse, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(150):
    try:
        urllib.request.urlopen(base + "/", timeout=2).read()
        break
    except OSError:
        time.sleep(0.2)
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
jar = http.cookiejar.CookieJar()
plain = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
try:
    plain.open(base + "/alisms/admin/")
    sys.exit("the panel did not send an anonymous visitor to the login page")
except urllib.error.HTTPError as answer:
    assert answer.code == 302, answer.code
    login = answer.headers["Location"]
    assert login.startswith("/login?next="), login
page = browser.open(base + login).read().decode()
token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
form = {"csrf_token": token, "phone": sys.argv[2], "password": sys.argv[3]}
panel = browser.open(base + login, data=urllib.parse.urlencode(form).encode())
assert panel.geturl().endswith("/alisms/admin/"), panel.geturl()
html = panel.read().decode()
assert "SMS parameters" in html and "check-missing" not in html, "checklist not all ticked"
log = browser.open(base + "/alisms/admin/log").read().decode()
assert "Sent" in log, "no test SMS in the send log"
register = browser.open(base + "/alisms/register").read().decode()
assert 'name="phone"' in register, "registration is not open"
print("probe: panel, sign-in, send log and registration page all answer as described")
"""


def _session_script(session: str, port: int) -> str:
    parts = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    for snippet in snippets():
        if snippet.kind == "shell" and snippet.args == [session]:
            parts.append(snippet.text)
        elif snippet.kind == "server" and snippet.args == [session]:
            parts.append(f"FLASK_RUN_PORT={port} {snippet.text.strip()} &")
            parts.append(f'"{PYTHON}" probe.py {port} "$ADMIN_PHONE" "$ADMIN_PASSWORD"')
    return "\n".join(parts) + "\n"


def test_quick_start_runs_as_printed(tmp_path: Path) -> None:
    """app.py, then the commands (with the emulator on port 8500), then the site, probed."""
    if _port_busy(8500):
        pytest.skip("port 8500 (the Quick start's emulator) is in use on this machine")
    blocks = [s for s in snippets() if s.args[-1:] == ["quickstart"]]
    assert [s.kind for s in blocks] == ["file", "shell", "server"]
    for snippet in blocks:
        if snippet.kind == "file":
            (tmp_path / snippet.args[0]).write_text(snippet.text, encoding="utf-8")
    admin = re.search(r"create-admin (\S+) --password \"([^\"]+)\"", blocks[1].text)
    assert admin, "the Quick start makes an admin"
    (tmp_path / "probe.py").write_text(PROBE, encoding="utf-8")
    env = _environment(tmp_path, ADMIN_PHONE=admin.group(1), ADMIN_PASSWORD=admin.group(2))
    output = _run(["bash", "-c", _session_script("quickstart", _free_port())], tmp_path, env)
    assert "Sent to +86138****8000" in output  # the test SMS reached the emulator
    assert re.search(r"SMS to 138\*\*\*\*8000 【阿里云短信测试】 SMS_154950909 code=\d{6}", output)
    assert "Ready: mobile registration is open." in output
    assert "probe: panel, sign-in" in output
    assert "13800138000" not in output.replace("+8613800138000", "")  # no stray number
    assert (tmp_path / "instance" / "site.db").exists()


def test_install_snippets_name_what_wheel_check_installs() -> None:
    """The install lines are run by .ci/wheel-check; here: they name the checkout or wheel."""
    installs = [s for s in snippets() if s.kind == "install"]
    assert installs
    for snippet in installs:
        assert "pip install" in snippet.text
        assert "pip install flask-alisms" not in snippet.text  # not published yet
    check = (ROOT / ".ci" / "wheel-check").read_text()
    assert "tests/test_readme.py" in check and "ALISMS_TEST_README_PYTHON" in check


def test_suite_ignores_the_callers_flask_and_alisms_variables(tmp_path: Path) -> None:
    """A shell set up for the example site (FLASK_SQLALCHEMY_DATABASE_URI, ...) changes no
    test: run two tests that would see them, in a child pytest with them set."""
    env = dict(os.environ)
    env.update(
        FLASK_SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/callers.db",
        FLASK_ALISMS_SENDER="console",
        ALISMS_LANGUAGE="zh_Hans",
        DATABASE_URL=f"sqlite:///{tmp_path}/callers-too.db",
    )
    output = _run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_example_app.py::test_database_url_and_flask_prefixed_variables",
            "tests/test_example_app.py::test_visitor_registers_by_phone_with_the_development_sender",
        ],
        ROOT,
        env,
    )
    assert "2 passed" in output
    assert not (tmp_path / "callers.db").exists()
    assert not (tmp_path / "callers-too.db").exists()
