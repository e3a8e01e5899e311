"""The user service's tunables, read once from the environment (`UserConfig.from_env`).

Only what deployments differ in is configurable: per-client-address limits (a NAT
or a test stack puts many people behind one address), the refresh grace, the
links in mails and the dev mailbox. Per-account limits are deliberately fixed
(see the constants beside each job).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .mailer import DEFAULT_RESET_LINK, DEFAULT_VERIFICATION_LINK

#: A rotated refresh token presented again this soon gets the same successor
#: (concurrent tabs), not a revoked session (USER_REFRESH_REUSE_GRACE_SECONDS).
REFRESH_REUSE_GRACE_SECONDS = 30.0
#: Per-client-address defaults (each overridable as `USER_<NAME>`).
LOGIN_FAILURES_PER_CLIENT = 20
LOGIN_ATTEMPTS_PER_CLIENT = 60
REGISTRATIONS_PER_CLIENT_PER_HOUR = 20
PASSWORD_RESETS_PER_CLIENT_PER_HOUR = 20


def per_client_limit(env: Mapping[str, str], name: str, default: int) -> int:
    """A per-client-address limit, overridable from the environment (`USER_<NAME>`).

    Deployments behind a NAT or a corporate proxy share one address among many
    people and raise these; test stacks whose every client is 127.0.0.1 too.
    The per-account failure limit is deliberately not configurable.
    """
    value = int(env.get(f"USER_{name}", default))
    if value < 1:
        raise SystemExit(f"USER_{name} must be a positive number of requests")
    return value


def refresh_grace_seconds(env: Mapping[str, str]) -> float:
    value = float(env.get("USER_REFRESH_REUSE_GRACE_SECONDS", REFRESH_REUSE_GRACE_SECONDS))
    if not 0 <= value <= 300:
        raise SystemExit("USER_REFRESH_REUSE_GRACE_SECONDS must be 0 to 300 seconds")
    return value


def link_template(env: Mapping[str, str], variable: str, default: str) -> str:
    """A mailed link with `{token}` exactly once (where the web app's page takes it)."""
    template = env.get(variable, default)
    if template.count("{token}") != 1:
        raise SystemExit(f"{variable} must contain {{token}} exactly once")
    return template


@dataclass(frozen=True)
class UserConfig:
    """USER_* settings; the defaults suit production behind a real edge.

    USER_REFRESH_REUSE_GRACE_SECONDS, USER_LOGIN_FAILURES_PER_CLIENT,
    USER_LOGIN_ATTEMPTS_PER_CLIENT, USER_REGISTRATIONS_PER_CLIENT_PER_HOUR,
    USER_PASSWORD_RESETS_PER_CLIENT_PER_HOUR, USER_EMAIL_VERIFICATION_URL,
    USER_PASSWORD_RESET_URL and USER_MAIL_SPOOL_DIR (docs/running.md).
    """

    refresh_grace_seconds: float = REFRESH_REUSE_GRACE_SECONDS
    login_failures_per_client: int = LOGIN_FAILURES_PER_CLIENT
    login_attempts_per_client: int = LOGIN_ATTEMPTS_PER_CLIENT
    registrations_per_client_per_hour: int = REGISTRATIONS_PER_CLIENT_PER_HOUR
    password_resets_per_client_per_hour: int = PASSWORD_RESETS_PER_CLIENT_PER_HOUR
    #: The link in verification mails, holding `{token}` once.
    verification_link: str = DEFAULT_VERIFICATION_LINK
    #: The link in password reset mails, holding `{token}` once.
    reset_link: str = DEFAULT_RESET_LINK
    #: The dev mailbox (`socialmesh up`); "" sends to the log only.
    mail_spool_dir: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> UserConfig:
        return cls(
            refresh_grace_seconds=refresh_grace_seconds(env),
            login_failures_per_client=per_client_limit(
                env, "LOGIN_FAILURES_PER_CLIENT", LOGIN_FAILURES_PER_CLIENT
            ),
            login_attempts_per_client=per_client_limit(
                env, "LOGIN_ATTEMPTS_PER_CLIENT", LOGIN_ATTEMPTS_PER_CLIENT
            ),
            registrations_per_client_per_hour=per_client_limit(
                env, "REGISTRATIONS_PER_CLIENT_PER_HOUR", REGISTRATIONS_PER_CLIENT_PER_HOUR
            ),
            verification_link=link_template(
                env, "USER_EMAIL_VERIFICATION_URL", DEFAULT_VERIFICATION_LINK
            ),
            reset_link=link_template(env, "USER_PASSWORD_RESET_URL", DEFAULT_RESET_LINK),
            password_resets_per_client_per_hour=per_client_limit(
                env, "PASSWORD_RESETS_PER_CLIENT_PER_HOUR", PASSWORD_RESETS_PER_CLIENT_PER_HOUR
            ),
            mail_spool_dir=env.get("USER_MAIL_SPOOL_DIR", ""),
        )
