"""Out-of-band messages to an account's email address (pluggable; logged in dev).

Registration answers the same whether or not an address is already registered
(security review M4); what differs is only what the mailbox receives, and only the
mailbox's owner reads that.
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger("socialmesh.mail")


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


def welcome(handle: str) -> tuple[str, str]:
    return (
        "Welcome to socialmesh",
        f"Your account @{handle} is ready. If you did not sign up, ignore this message.",
    )


def address_already_registered(handle: str) -> tuple[str, str]:
    return (
        "Someone signed up with your email address",
        f"An account @{handle} was just registered with this address, which another "
        "account already uses. If that was you, you can sign in with your existing "
        "account; if not, you can ignore this message.",
    )
