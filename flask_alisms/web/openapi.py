"""The JSON API described as OpenAPI 3.1, served at ``{prefix}/api/openapi.json``.

One table (:data:`OPERATIONS`) lists each route with its body, its success answer and the
error codes it can answer; ``tests/test_openapi.py`` checks it against the URL map and the
code, and the README's API table is generated from it (:func:`rst_table`).
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from flask import Response, current_app, jsonify

#: Every stable ``error`` code the API answers, with its HTTP status and meaning.
ERRORS: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "The body is not a JSON object."),
    "csrf_failed": (400, "X-CSRFToken header missing, expired or of another session."),
    "invalid_phone": (400, "Not a mobile number."),
    "country_not_allowed": (400, "The number's country code is not allowed."),
    "invalid_purpose": (400, "purpose is not register, reset or login."),
    "human_check_required": (400, "Solve the challenge in human_check, then send it back."),
    "human_check_failed": (
        400,
        "The human check's answer was wrong or expired; a new one is in human_check.",
    ),
    "not_signed_in": (401, "Nobody is signed in."),
    "reauthentication_required": (401, "Sign in again before changing the phone number."),
    "invalid_code": (400, "Wrong, expired, used or burnt code (one answer for all)."),
    "registration_disabled": (403, "Registration by phone is switched off."),
    "login_disabled": (403, "Sign-in by SMS code is switched off."),
    "not_found": (404, "No such API route."),
    "method_not_allowed": (405, "Wrong method; see the Allow header."),
    "phone_taken": (409, "The number has an account already."),
    "too_large": (413, "The body is over 16 KB."),
    "weak_password": (422, "The password breaks a rule; message says which."),
    "invalid_field": (422, "An extra sign-up field is invalid; field names it."),
    "rate_limited": (429, "A send or check limit is reached; see Retry-After."),
    "too_many_attempts": (429, "Too many wrong codes; see Retry-After."),
    "sms_not_configured": (503, "The Aliyun parameters are not filled in."),
    "service_unavailable": (503, "The limit or code storage is down; try again shortly."),
    "registration_failed": (503, "The account could not be created; request a new code."),
    "reset_failed": (503, "The password could not be changed; request a new code."),
    "phone_change_failed": (503, "The number could not be changed; request a new code."),
    "sms_unavailable": (503, "The SMS could not be sent (the provider fails); see Retry-After."),
    "human_check_unavailable": (503, "The human check's provider did not answer; try again."),
}

#: What every POST can answer before its own checks.
_POST_ERRORS = (
    "invalid_request",
    "csrf_failed",
    "too_large",
    "invalid_phone",
    "country_not_allowed",
    "service_unavailable",
)
_ACCOUNT_ERRORS = (
    *_POST_ERRORS,
    "registration_disabled",
    "sms_not_configured",
    "weak_password",
    "invalid_code",
    "too_many_attempts",
    "rate_limited",
)

_PHONE = {"type": "string", "description": "E.164 (+8613800138000) or national with country_code"}
_COUNTRY = {"type": ["string", "integer"], "description": "Calling code for a national number"}
_CSRF = {"type": "string", "description": "The renewed session's CSRF token: use it from now on"}
_HUMAN = {
    "type": "string",
    "description": "The answer to the human check, when an earlier answer asked for one",
}
_SENT = {
    "sent": {"const": True},
    "resend_after": {"type": "integer"},
    "maybe_late": {
        "type": "boolean",
        "description": "Aliyun answered too slowly: the SMS may be late",
    },
    "message": {"type": "string"},
}
_SEND_ERRORS = (
    *_POST_ERRORS,
    "sms_not_configured",
    "rate_limited",
    "sms_unavailable",
    "human_check_required",
    "human_check_failed",
    "human_check_unavailable",
)
_SIGNED_IN = ("not_signed_in", "reauthentication_required")

#: (path below the prefix, method) -> the operation. ``body``/``answer`` are JSON Schemas.
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/api/csrf-token", "get"): {
        "summary": "A CSRF token for this session, to send in the X-CSRFToken header.",
        "status": 200,
        "answer": {"csrf_token": {"type": "string"}},
        "errors": (),
    },
    ("/api/status", "get"): {
        "summary": "Whether phone sign-up is open, and what the client needs to know.",
        "status": 200,
        "answer": {
            "mobile_registration_open": {"type": "boolean"},
            "mobile_login_open": {"type": "boolean"},
            "code_length": {"type": "integer"},
            "resend_interval": {"type": "integer"},
            "country_codes": {"type": "array", "items": {"type": "integer"}},
            "human_check": {
                "type": "object",
                "properties": {
                    "mode": {"type": "string", "enum": ["off", "adaptive", "always"]},
                    "kind": {"type": "string"},
                    "required": {"type": "boolean"},
                },
            },
        },
        "errors": (),
    },
    ("/api/openapi.json", "get"): {
        "summary": "This document.",
        "status": 200,
        "answer": {"openapi": {"type": "string"}},
        "errors": (),
    },
    ("/api/send-code", "post"): {
        "summary": "Send a verification code by SMS (same answer for any number).",
        "body": {
            "phone": _PHONE,
            "country_code": _COUNTRY,
            "purpose": {"enum": ["register", "reset", "login"], "default": "register"},
            "human_check": _HUMAN,
        },
        "required": ["phone"],
        "status": 200,
        "answer": _SENT,
        "errors": (
            *_SEND_ERRORS,
            "invalid_purpose",
            "registration_disabled",
            "login_disabled",
        ),
    },
    ("/api/register", "post"): {
        "summary": "Create the account with the code and sign in (the session is renewed).",
        "body": {
            "phone": _PHONE,
            "country_code": _COUNTRY,
            "code": {"type": "string"},
            "password": {"type": "string"},
        },
        "required": ["phone", "code", "password"],
        "extra_fields": True,
        "status": 201,
        "answer": {"user_id": {}, "csrf_token": _CSRF},
        "errors": (*_ACCOUNT_ERRORS, "phone_taken", "invalid_field", "registration_failed"),
    },
    ("/api/reset-password", "post"): {
        "summary": "Set a new password with the code and sign in (the session is renewed).",
        "body": {
            "phone": _PHONE,
            "country_code": _COUNTRY,
            "code": {"type": "string"},
            "password": {"type": "string"},
        },
        "required": ["phone", "code", "password"],
        "status": 200,
        "answer": {"reset": {"const": True}, "user_id": {}, "csrf_token": _CSRF},
        "errors": (*_ACCOUNT_ERRORS, "reset_failed"),
    },
    ("/api/login", "post"): {
        "summary": "Sign in with the code, no password; may create the account (session renewed).",
        "body": {"phone": _PHONE, "country_code": _COUNTRY, "code": {"type": "string"}},
        "required": ["phone", "code"],
        "status": 200,
        "answer": {"user_id": {}, "created": {"type": "boolean"}, "csrf_token": _CSRF},
        "errors": tuple(
            code
            for code in (*_ACCOUNT_ERRORS, "login_disabled", "registration_failed")
            if code not in ("registration_disabled", "weak_password")
        ),
    },
    ("/api/phone/send-code", "post"): {
        "summary": "Send a code to the number the signed-in user wants as theirs.",
        "body": {"phone": _PHONE, "country_code": _COUNTRY, "human_check": _HUMAN},
        "required": ["phone"],
        "status": 200,
        "answer": _SENT,
        "errors": (*_SEND_ERRORS, *_SIGNED_IN),
    },
    ("/api/phone", "post"): {
        "summary": "Give the signed-in user the number the code verifies.",
        "body": {"phone": _PHONE, "country_code": _COUNTRY, "code": {"type": "string"}},
        "required": ["phone", "code"],
        "status": 200,
        "answer": {"phone": {"type": "string", "description": "E.164"}},
        "errors": (
            *_POST_ERRORS,
            *_SIGNED_IN,
            "sms_not_configured",
            "invalid_code",
            "too_many_attempts",
            "rate_limited",
            "phone_taken",
            "phone_change_failed",
        ),
    },
}


def _error_responses(codes: tuple[str, ...]) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(ERRORS[code][0], []).append(code)
    return {
        str(status): {
            "description": "; ".join(f"{code}: {ERRORS[code][1]}" for code in names),
            "content": {
                "application/json": {
                    "schema": {
                        "allOf": [
                            {"$ref": "#/components/schemas/Error"},
                            {"properties": {"error": {"enum": names}}},
                        ]
                    }
                }
            },
        }
        for status, names in sorted(by_status.items())
    }


def _operation(path: str, method: str, spec: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": path.rsplit("/", 1)[-1].replace(".", "-").replace("-", "_"),
        "summary": spec["summary"],
        "responses": {
            str(spec["status"]): {
                "description": "Success",
                "content": {
                    "application/json": {"schema": {"type": "object", "properties": spec["answer"]}}
                },
            },
            **_error_responses(tuple(spec["errors"])),
        },
    }
    if method == "post":
        operation["parameters"] = [
            {"name": "X-CSRFToken", "in": "header", "required": True, "schema": {"type": "string"}}
        ]
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": spec["body"],
                        "required": spec.get("required", []),
                        "additionalProperties": bool(spec.get("extra_fields")),
                    }
                }
            },
        }
    return operation


def document(prefix: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for an app whose ``ALISMS_URL_PREFIX`` is ``prefix``."""
    try:
        version = metadata.version("flask-alisms")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        version = "0"
    paths: dict[str, Any] = {}
    for (path, method), spec in OPERATIONS.items():
        paths.setdefault(prefix + path, {})[method] = _operation(path, method, spec)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "flask-alisms JSON API",
            "version": version,
            "description": (
                "Phone sign-up and password reset by SMS code. Every POST needs the CSRF "
                "token of GET csrf-token in the X-CSRFToken header; register and "
                "reset-password renew the session and answer with its new token."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string", "enum": sorted(ERRORS)},
                        "message": {"type": "string", "description": "Human text, translated"},
                        "retry_after": {"type": "integer"},
                        "field": {"type": "string"},
                    },
                }
            }
        },
    }


def api_openapi() -> Response:
    return jsonify(document(current_app.config["ALISMS_URL_PREFIX"]))


def rst_table(prefix: str = "/alisms") -> str:
    """The README's table of routes and error codes, generated from :data:`OPERATIONS`."""
    rows = []
    for (path, method), spec in OPERATIONS.items():
        by_status: dict[int, list[str]] = {}
        for code in sorted(spec["errors"]):
            by_status.setdefault(ERRORS[code][0], []).append(f"``{code}``")
        errors = "; ".join(
            f"{status} {', '.join(codes)}" for status, codes in sorted(by_status.items())
        )
        rows.append(
            (
                f"``{method.upper()} {prefix}{path}``",
                f"{spec['status']}; {errors}" if errors else str(spec["status"]),
            )
        )
    width = max(len(route) for route, _ in rows)
    rule = f"{'=' * width} {'=' * 60}"
    lines = [rule, f"{'Route':<{width}} Answers", rule]
    for route, answers in rows:
        words, line = answers.split(" "), ""
        chunks = []
        for word in words:
            if line and len(line) + 1 + len(word) > 60:
                chunks.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        chunks.append(line)
        lines.append(f"{route:<{width}} {chunks[0]}")
        lines.extend(f"{'':<{width}} {chunk}" for chunk in chunks[1:])
    lines.append(rule)
    return "\n".join(lines)
