"""What an account's fields may be (handles, addresses, names, bios, passwords) and who
may act on an account: the checks every job shares, so each states a rule once."""

from __future__ import annotations

import re

from services.kit.auth import Caller, require_caller
from services.kit.errors import PermissionDenied, Reason
from services.kit.validation import Violations, require_positive_id, strip_control_characters

HANDLE = re.compile(r"^[a-z0-9_]{3,30}$")
HANDLE_RULE = "must be 3-30 characters of a-z, 0-9 and _"
#: What a handle may be before normalization (surrounding spaces are stripped).
MAX_HANDLE_INPUT = 64
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_DISPLAY_NAME = 50
MAX_BIO = 300
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # argon2 is happy with more; this only bounds the work per request
#: Verification and password reset tokens (ours are 43 characters).
MAX_TOKEN = 128


def not_owner(what: str) -> PermissionDenied:
    return PermissionDenied(f"you may only {what}", reason=Reason.NOT_OWNER)


def require_owner(user_id: int, what: str) -> Caller:
    """The caller, who must be the account `user_id` names."""
    caller = require_caller()
    require_positive_id(user_id, "user_id")
    if user_id != caller.user_id:
        raise not_owner(what)
    return caller


def normalize_handle(raw: str) -> str:
    return raw.strip().lower()


def bounded_handle(raw: str) -> str:
    """The normalized handle, cut before anything else sees it (it keys limits and queries)."""
    return normalize_handle(raw[: MAX_HANDLE_INPUT + 1])


def check_email(email: str, v: Violations) -> None:
    v.check(
        bool(EMAIL.match(email)) and len(email) <= 254 and email.isprintable(),
        "email",
        "must be a valid email address",
    )


def check_new_password(password: str, field: str, v: Violations) -> None:
    v.check(
        MIN_PASSWORD <= len(password) <= MAX_PASSWORD,
        field,
        f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters",
    )


def check_current_password(password: str, field: str, v: Violations) -> None:
    v.check(bool(password), field, "required")
    v.check(len(password) <= MAX_PASSWORD, field, "too long")


def check_token(token: str, v: Violations, what: str) -> None:
    """A mailed token: required, printable ASCII of bounded length."""
    if v.check(bool(token), "token", "required"):
        v.check(
            len(token) <= MAX_TOKEN and token.isascii() and token.isprintable(),
            "token",
            f"is not a {what}",
        )


def validate_display_name(value: str, field: str, v: Violations) -> str:
    cleaned = strip_control_characters(value).replace("\n", " ").strip()
    v.check(len(cleaned) <= MAX_DISPLAY_NAME, field, f"at most {MAX_DISPLAY_NAME} characters")
    return cleaned


def validate_bio(value: str, field: str, v: Violations) -> str:
    cleaned = strip_control_characters(value).strip()
    v.check(len(cleaned) <= MAX_BIO, field, f"at most {MAX_BIO} characters")
    return cleaned
