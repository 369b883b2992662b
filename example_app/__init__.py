"""A small real site using flask-alisms: sign up by phone, log in, an admin panel.

Run it with ``flask --app example_app run --debug``; make the first admin with
``flask --app example_app create-admin +8613800138000``. Configuration follows Flask's
conventions: ``instance/config.py`` if present, then ``FLASK_*`` environment variables, e.g.
``FLASK_SQLALCHEMY_DATABASE_URI``, ``FLASK_ALISMS_ENDPOINT``, ``FLASK_ALISMS_SENDER`` or
``FLASK_ALISMS_LIMITER_STORAGE_URI``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask, Response, flash, redirect, render_template, request, session, url_for
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect, FlaskForm
from werkzeug.exceptions import BadRequest, ServiceUnavailable
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import InputRequired, Length

from flask_alisms import AliSMS, SQLAlchemyUserAdapter
from flask_alisms.flows.throttle import Rule
from flask_alisms.i18n import current_language, gettext, lazy_gettext, ngettext
from flask_alisms.phones import InvalidPhone, mask, parse_phone
from flask_alisms.state import get_state
from flask_alisms.web.forms import TranslatedMeta
from flask_alisms.web.http import DATABASE_DOWN, local_redirect_target, server_body_errors

#: The site's own strings, in the flask_alisms domain; the extension searches it first.
TRANSLATIONS = Path(__file__).parent / "translations"

db = SQLAlchemy()
csrf = CSRFProtect()


class User(db.Model):  # type: ignore[name-defined]
    __tablename__ = "example_user"
    id = sa.Column(sa.Integer, primary_key=True)
    phone = sa.Column(sa.String(32), unique=True, nullable=False)
    # None for an account created at its first sign-in by SMS code (login.auto_register).
    password_hash = sa.Column(sa.String(256), nullable=True)
    is_admin = sa.Column(sa.Boolean, nullable=False, default=False)
    # Bumped by a password reset: every session holding an older value is signed out.
    session_version = sa.Column(sa.Integer, nullable=False, default=0, server_default="0")


def login(user: User) -> None:
    session["user"] = users.session_token(user)


def current_user() -> User | None:
    user: User | None = users.load_by_session_token(session.get("user"))
    return user


users = SQLAlchemyUserAdapter(db, User, login=login, session_version_attribute="session_version")
alisms = AliSMS(db=db, user_adapter=users)

#: Security headers for the site's own pages (the extension sets the same on its own).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

#: Password sign-in budgets, in the limits storage the extension uses: every attempt per
#: address, failures per number (counted the same for unknown numbers, so a 429 tells nothing).
LOGIN_PER_IP = ("example-login-ip", 10, 60)
LOGIN_FAILURES_PER_NUMBER = ("example-login-failures", 10, 3600)


def _login_rule(budget: tuple[str, int, int], subject: str) -> Rule:
    """One of the sign-in budgets for ``subject``, keyed by a digest (no number in Redis)."""
    name, limit, window = budget
    digest = get_state().keyring.subject_digest(name, subject)
    return Rule("example", name, digest, limit, window)

#: Hashed once at start: an unknown number costs the same hash check as a known one.
_DUMMY_HASH: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(generate_password_hash(secrets.token_urlsafe(16)))
    return _DUMMY_HASH[0]


@alisms.admin_loader
def load_admin() -> str | None:
    user = current_user()
    return user.phone if user is not None and user.is_admin else None


@alisms.signed_in_loader
def signed_in() -> bool:
    """Anonymous visitors of the panel go to /login (ALISMS_LOGIN_VIEW), others get a 403."""
    return current_user() is not None


@alisms.current_user_loader
def load_user() -> User | None:
    """Who may change their phone at /alisms/account/phone."""
    return current_user()


class LoginForm(FlaskForm):
    Meta = TranslatedMeta  # WTForms' own messages in the page's language

    phone = StringField(
        lazy_gettext("Mobile number"), validators=[InputRequired(), Length(max=32)]
    )
    password = PasswordField(
        lazy_gettext("Password"), validators=[InputRequired(), Length(max=256)]
    )
    submit = SubmitField(lazy_gettext("Sign in"))


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{Path(app.instance_path) / 'example.db'}",
        # Codes go to the console until an admin fills in the Aliyun parameters.
        ALISMS_SENDER="auto",
        # Open by default so a newcomer can try the flow; an admin can switch it off.
        ALISMS_PARAM_DEFAULTS={
            "server.allow_user_register": True,
            "server.enable_mobile_register": True,
            # Sign in by SMS code, creating the account at the first sign-in.
            "server.enable_mobile_login": True,
            "login.auto_register": True,
        },
        # The panel sends visitors who are not signed in here, with ?next=.
        ALISMS_LOGIN_VIEW="login_page",
        # The site's catalogue (example_app/translations) before flask-alisms' own.
        ALISMS_TRANSLATION_DIRECTORIES=[str(TRANSLATIONS)],
        # A maximum makes Werkzeug read the body through a LimitedStream, which turns the
        # server's read errors (bad chunking, a body cut short) into a 400.
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    # Outside debug the session cookie only travels over HTTPS; SameSite=Lax keeps it off
    # cross-site POSTs. hide_parameters: SQLAlchemy's errors would carry phone numbers.
    app.config.update(
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=not app.debug,
        SESSION_COOKIE_HTTPONLY=True,
        SQLALCHEMY_ENGINE_OPTIONS={"hide_parameters": True},
    )
    app.config.from_pyfile("config.py", silent=True)
    # The conventional variables of hosting platforms, then FLASK_* ones (which win).
    if os.environ.get("DATABASE_URL"):
        app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    if os.environ.get("REDIS_URL"):
        app.config["ALISMS_LIMITER_STORAGE_URI"] = os.environ["REDIS_URL"]
    app.config.from_prefixed_env()
    if test_config:
        app.config.update(test_config)
    if not app.config.get("SECRET_KEY"):
        key_file = Path(app.instance_path) / "secret_key"
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(48))
            key_file.chmod(0o600)
        app.config["SECRET_KEY"] = key_file.read_text().strip()

    db.init_app(app)
    csrf.init_app(app)
    alisms.init_app(app)

    @app.context_processor
    def translations() -> dict[str, Any]:
        # The site's pages use flask-alisms' machinery, so they follow the same language.
        return {
            "_": gettext,
            "gettext": gettext,
            "ngettext": ngettext,
            "alisms_lang": current_language(),
        }

    for error in server_body_errors():  # gunicorn's chunk errors on the site's own routes

        @app.errorhandler(error)
        def unreadable_body(exc: Exception) -> Any:
            return BadRequest(gettext("The request body could not be read."))

    def database_down(exc: Exception) -> Any:
        # The exception's text holds the statement's parameters: log its type only.
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            db.session.rollback()
        app.logger.error("Database unavailable on %s: %s", request.endpoint, type(exc).__name__)
        message = gettext("The service is unavailable for a moment. Please try again shortly.")
        return ServiceUnavailable(message)

    for db_error in DATABASE_DOWN:  # the extension answers the same on its own routes
        app.register_error_handler(db_error, database_down)

    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.get("/")
    def index() -> str:
        return render_template("example/index.html", user=current_user())

    @app.get("/favicon.ico")
    def favicon() -> Any:
        return app.send_static_file("favicon.svg"), 200, {"Content-Type": "image/svg+xml"}

    @app.route("/login", methods=["GET", "POST"])
    def login_page() -> Any:
        form = LoginForm()
        if form.validate_on_submit():
            number = str(form.phone.data or "").strip()[:32]
            try:
                parsed: str | None = parse_phone(
                    number, alisms.params.get("phone.allowed_country_codes")
                ).e164
            except InvalidPhone:
                parsed = None
            throttle = get_state().throttle
            failures = _login_rule(LOGIN_FAILURES_PER_NUMBER, parsed or number)
            try:
                allowed = throttle.hit([_login_rule(LOGIN_PER_IP, request.remote_addr or "")])
                allowed = allowed is None and throttle.counts([failures])[0] < failures.limit
            except Exception:  # any storage driver's error: fail closed
                app.logger.error("Limiter storage unavailable: password sign-in refused")
                return render_template("example/login.html", form=form), 503
            if not allowed:
                form.password.errors.append(
                    gettext("Too many attempts. Please wait a few minutes and try again.")
                )
                return render_template("example/login.html", form=form), 429
            user = None
            if parsed is not None:
                user = db.session.scalars(sa.select(User).where(User.phone == parsed)).first()
            # The same hash check whether the number is known or not: equal time.
            # An account made by a sign-in by code has no password (None): dummy too.
            stored = (user.password_hash if user is not None else None) or _dummy_hash()
            if check_password_hash(stored, form.password.data) and user is not None:
                session.clear()
                login(user)
                return redirect(local_redirect_target(url_for("index")))
            with contextlib.suppress(Exception):
                throttle.hit([failures])
            form.password.errors.append(gettext("Wrong number or password."))
        return render_template("example/login.html", form=form)

    @app.get("/account")
    def account() -> Any:
        user = current_user()
        if user is None:
            return redirect(url_for("login_page"))
        return render_template("example/account.html", user=user, phone=mask(user.phone))

    @app.post("/logout")
    def logout() -> Any:
        session.clear()  # CSRFProtect has checked the token
        flash(gettext("Signed out."), "info")
        return redirect(url_for("index"))

    @app.cli.command("init-db")
    def init_db() -> None:
        """Create the tables (the site's and flask-alisms')."""
        db.create_all()
        click.echo("Tables created.")

    @app.cli.command("create-admin")
    @click.argument("phone")
    @click.password_option()
    def create_admin(phone: str, password: str) -> None:
        """Create (or promote) the admin account for PHONE."""
        db.create_all()
        try:
            parsed = parse_phone(phone, alisms.params.get("phone.allowed_country_codes"))
        except InvalidPhone as exc:
            raise click.BadParameter(exc.message, param_hint="PHONE") from None
        user = db.session.scalars(sa.select(User).where(User.phone == parsed.e164)).first()
        if user is None:
            user = User(phone=parsed.e164, password_hash="")
            db.session.add(user)
        user.password_hash = generate_password_hash(password)
        user.is_admin = True
        db.session.commit()
        click.echo(f"Admin {parsed.e164} is ready; sign in at /login.")

    with app.app_context():
        db.create_all()
    return app
