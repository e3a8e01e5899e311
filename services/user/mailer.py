"""Out-of-band messages to an account's email address (pluggable; logged in dev).

Registration answers the same whether or not an address is already registered
(security review M4); what differs is only what the mailbox receives, and only the
mailbox's owner reads that. Every registration mail carries the new account's
verification link, so whoever reads the mailbox (and only they) can verify it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("socialmesh.mail")

#: Where a verification link points: the web app's page, which POSTs the token to
#: `/v1/users:verifyEmail`. In the fragment, so it never reaches a server's access log
#: or a Referer header. Override with USER_EMAIL_VERIFICATION_URL (must hold `{token}`).
DEFAULT_VERIFICATION_LINK = "https://socialmesh.example/verify-email#token={token}"


#: Where a password reset link points: the web app's page, which POSTs the token and
#: the new password to `/v1/auth:resetPassword`. Override with USER_PASSWORD_RESET_URL.
DEFAULT_RESET_LINK = "https://socialmesh.example/reset-password#token={token}"


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


_LINK = re.compile(r"https?://\S+")


class SpoolMailer(LogMailer):
    """The dev mailbox (`socialmesh up`): each message is also a JSON file in a spool
    directory under the data dir (USER_MAIL_SPOOL_DIR), which `socialmesh mail` lists.
    Never configured in Kubernetes: production mail goes to a real sender."""

    def __init__(self, spool: Path) -> None:
        super().__init__()
        self.spool = spool
        spool.mkdir(parents=True, exist_ok=True)

    async def send(self, to: str, subject: str, body: str) -> None:
        await super().send(to, subject, body)
        sent = time.time()
        mail = {
            "to": to,
            "subject": subject,
            "body": body,
            "links": _LINK.findall(body),
            "sent_at": datetime.fromtimestamp(sent, UTC).isoformat(timespec="seconds"),
        }
        name = f"{int(sent * 1_000_000):020d}-{uuid.uuid4().hex[:8]}.json"
        staged = self.spool / f".{name}"
        await asyncio.to_thread(staged.write_text, json.dumps(mail, indent=2))
        await asyncio.to_thread(staged.rename, self.spool / name)  # whole files only


class Outbox:
    """What the jobs send through: the servicer's current mailer (replaceable at any
    time), and background sends held until they finish (an answer that must not
    wait for, or reveal, a mail sends it `later`)."""

    def __init__(self, mailer: Callable[[], Mailer]) -> None:
        self._mailer = mailer
        self._tasks: set[asyncio.Task[None]] = set()

    async def send(self, to: str, subject: str, body: str) -> None:
        await self._mailer().send(to, subject, body)

    def later(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def mailer_for(spool_dir: str) -> Mailer:
    """The dev mailbox when USER_MAIL_SPOOL_DIR is set (`socialmesh up`), else the log."""
    return SpoolMailer(Path(spool_dir)) if spool_dir else LogMailer()


def read_spool(spool: Path, *, to: str = "", limit: int = 20) -> list[dict[str, object]]:
    """The spooled mails, latest first (optionally only those to one address)."""
    found: list[dict[str, object]] = []
    for path in sorted(spool.glob("[0-9]*.json"), reverse=True):
        try:
            mail = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if to and str(mail.get("to", "")).lower() != to.lower():
            continue
        found.append(mail)
        if len(found) >= limit:
            break
    return found


def print_spool(data_dir: Path, *, to: str = "", limit: int = 20, as_json: bool = False) -> int:
    """`socialmesh mail`: the dev mailbox of a data dir, latest first."""
    spool = data_dir / "mail"
    mails = read_spool(spool, to=to, limit=limit)
    if as_json:
        print(json.dumps(mails, indent=2))
        return 0
    if not mails:
        print(f"no mail in {spool}")
        return 0
    for mail in mails:
        print(f"{mail['sent_at']}  to {mail['to']}  {mail['subject']!r}")
        for link in mail.get("links") or []:  # type: ignore[attr-defined]
            print(f"    {link}")
    return 0


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
