"""Out-of-band messages to an account's email address (pluggable; logged in dev).

Registration answers the same whether or not an address is already registered
(security review M4); what differs is only what the mailbox receives, and only the
mailbox's owner reads that. Every registration mail carries the new account's
verification link, so whoever reads the mailbox (and only they) can verify it.
"""

from __future__ import annotations

import logging
import os
from typing import Protocol

log = logging.getLogger("socialmesh.mail")

#: Where a verification link points: the web app's page, which POSTs the token to
#: `/v1/users:verifyEmail`. In the fragment, so it never reaches a server's access log
#: or a Referer header. Override with USER_EMAIL_VERIFICATION_URL (must hold `{token}`).
DEFAULT_VERIFICATION_LINK = "https://socialmesh.example/verify-email#token={token}"


#: Where a password reset link points: the web app's page, which POSTs the token and
#: the new password to `/v1/auth:resetPassword`. Override with USER_PASSWORD_RESET_URL.
DEFAULT_RESET_LINK = "https://socialmesh.example/reset-password#token={token}"


def _template(variable: str, default: str) -> str:
    template = os.environ.get(variable, default)
    if template.count("{token}") != 1:
        raise SystemExit(f"{variable} must contain {{token}} exactly once")
    return template


def verification_link_template() -> str:
    return _template("USER_EMAIL_VERIFICATION_URL", DEFAULT_VERIFICATION_LINK)


def reset_link_template() -> str:
    return _template("USER_PASSWORD_RESET_URL", DEFAULT_RESET_LINK)


class Mailer(Protocol):
    """Sends one plain-text message. Implementations must not raise for a bad address."""

    async def send(self, to: str, subject: str, body: str) -> None: ...


class LogMailer:
    """The development sender: writes each message to the log instead of mailing it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []  # the last few, for tests and dev
        self._keep = 100

    async def send(self, to: str, subject: str, body: str) -> None:
        self.sent = [*self.sent[-(self._keep - 1) :], (to, subject, body)]
        log.info("mail to=%s subject=%r\n%s", to, subject, body)


_LINK_NOTE = "The link works once, for 24 hours."


def welcome(handle: str, link: str) -> tuple[str, str]:
    return (
        "Welcome to socialmesh",
        f"Your account @{handle} is ready. Confirm that this address is yours:\n\n"
        f"{link}\n\n{_LINK_NOTE} If you did not sign up, ignore this message.",
    )


def address_already_registered(handle: str, link: str) -> tuple[str, str]:
    return (
        "Someone signed up with your email address",
        f"An account @{handle} was just registered with this address, which another "
        "account already uses. If that was you, you can sign in with your existing "
        f"account, or confirm this address for @{handle}:\n\n{link}\n\n{_LINK_NOTE} An "
        "address can be verified on one account only. If it was not you, ignore this "
        "message: without this mailbox nobody can verify that account.",
    )


def verification(handle: str, link: str) -> tuple[str, str]:
    return (
        "Confirm your email address",
        f"Confirm that this address belongs to @{handle}:\n\n{link}\n\n{_LINK_NOTE} "
        "Earlier links no longer work. If you did not ask for this, ignore this message.",
    )


def password_reset(handle: str, link: str) -> tuple[str, str]:
    return (
        "Reset your socialmesh password",
        f"Someone asked to reset the password of @{handle}. To choose a new one:\n\n"
        f"{link}\n\nThe link works once, for 1 hour; every device signed in to the account "
        "is signed out. If you did not ask for this, ignore this message: your password "
        "stays as it is.",
    )


def email_changed(handle: str) -> tuple[str, str]:
    return (
        "Your socialmesh email address was changed",
        f"The email address of @{handle} was just changed and no longer is this one. If "
        "you did not do this, reset your password and contact support.",
    )
