"""A small real site using flask-alisms: sign up by phone, log in, an admin panel.

Run it with ``flask --app example_app run --debug``; make the first admin with
``flask --app example_app create-admin +8613800138000``. Configuration follows Flask's
conventions: ``instance/config.py`` if present, then ``FLASK_*`` environment variables, e.g.
``FLASK_SQLALCHEMY_DATABASE_URI``, ``FLASK_ALISMS_ENDPOINT``, ``FLASK_ALISMS_SENDER`` or
``FLASK_ALISMS_LIMITER_STORAGE_URI``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask, flash, redirect, render_template, session, url_for
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect, FlaskForm
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import InputRequired, Length

from flask_alisms import AliSMS, SQLAlchemyUserAdapter
from flask_alisms.i18n import current_language, gettext, lazy_gettext, ngettext
from flask_alisms.phones import InvalidPhone, mask, parse_phone
from flask_alisms.web.forms import TranslatedMeta

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


def login(user: User) -> None:
    session["user_id"] = user.id


def current_user() -> User | None:
    user_id = session.get("user_id")
    return db.session.get(User, user_id) if user_id is not None else None


alisms = AliSMS(db=db, user_adapter=SQLAlchemyUserAdapter(db, User, login=login))


@alisms.admin_loader
def load_admin() -> str | None:
    user = current_user()
    return user.phone if user is not None and user.is_admin else None


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
        # The site's catalogue (example_app/translations) before flask-alisms' own.
        ALISMS_TRANSLATION_DIRECTORIES=[str(TRANSLATIONS)],
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

    @app.get("/")
    def index() -> str:
        return render_template("example/index.html", user=current_user())

    @app.route("/login", methods=["GET", "POST"])
    def login_page() -> Any:
        form = LoginForm()
        if form.validate_on_submit():
            user = None
            try:
                phone = parse_phone(
                    form.phone.data, alisms.params.get("phone.allowed_country_codes")
                )
                user = db.session.scalars(sa.select(User).where(User.phone == phone.e164)).first()
            except InvalidPhone:
                pass
            if (
                user is not None
                and user.password_hash  # None: signed up by code, no password yet
                and check_password_hash(user.password_hash, form.password.data)
            ):
                session.clear()
                login(user)
                return redirect(url_for("index"))
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
