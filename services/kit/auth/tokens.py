"""The two kinds of token: user access tokens and service credentials, minted and verified."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import Reason, Unauthenticated
from .callers import Caller
from .keys import ALGORITHM, SERVICE_NAME, key_id

#: `sub` of a service credential: "svc:<service name>".
SERVICE_SUBJECT_PREFIX = "svc:"
#: Longest service credential a verifier accepts (exp - iat); minted ones live 5 minutes.
MAX_SERVICE_TOKEN_LIFETIME = 15 * 60
#: RFC 8725 §3.11 explicit typing (RFC 9068's media type): access tokens are minted with
#: this `typ` and only tokens carrying it are accepted as access tokens, so any other JWT
#: ever signed with the same key (an email link, an upload URL) cannot pass as one.
ACCESS_TOKEN_TYPE = "at+jwt"


class TokenSigner:
    """Mints access tokens; only the user service holds the private key."""

    def __init__(
        self, private_key: ec.EllipticCurvePrivateKey, *, issuer: str, audience: str, ttl: int
    ) -> None:
        self._key = private_key
        self._kid = key_id(private_key.public_key())
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl

    def sign(self, user_id: int, session_id: int, *, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "sid": str(session_id),
            "jti": uuid.uuid4().hex,
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.ttl,
        }
        return jwt.encode(
            claims,
            self._key,
            algorithm=ALGORITHM,
            headers={"kid": self._kid, "typ": ACCESS_TOKEN_TYPE},
        )


def _verified_claims(
    token: str, key: ec.EllipticCurvePublicKey, *, issuer: str, audience: str
) -> dict[str, Any]:
    """The claims of a token signed by `key`: ES256 only, the RFC 8725 claims required."""
    return jwt.decode(
        token,
        key,
        algorithms=[ALGORITHM],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        leeway=5,
    )


class TokenVerifier:
    """Verifies user access tokens with the public key(s); used by every service."""

    def __init__(
        self, public_keys: list[ec.EllipticCurvePublicKey], *, issuer: str, audience: str
    ) -> None:
        self._keys = {key_id(k): k for k in public_keys}
        self.issuer = issuer
        self.audience = audience

    def verify(self, token: str) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
            # `typ` is compared case-insensitively and may carry the "application/" prefix
            # (RFC 8725 §3.11, RFC 9068 §4).
            typ = str(header.get("typ", "")).lower().removeprefix("application/")
            if typ != ACCESS_TOKEN_TYPE:
                raise Unauthenticated(
                    "not an access token (typ must be at+jwt)", reason=Reason.TOKEN_INVALID
                )
            key = self._keys.get(str(header.get("kid", "")))
            if key is None:
                raise Unauthenticated(
                    "access token signed by an unknown key", reason=Reason.TOKEN_INVALID
                )
            claims = _verified_claims(token, key, issuer=self.issuer, audience=self.audience)
            return Caller(
                user_id=int(claims["sub"]),
                session_id=int(claims.get("sid", "0")),
                token_id=str(claims.get("jti", "")),
                bearer=token,
                expires_at=float(claims["exp"]),
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated(
                "access token expired: refresh it", reason=Reason.TOKEN_EXPIRED
            ) from exc
        except (jwt.InvalidTokenError, ValueError, KeyError) as exc:
            raise Unauthenticated("invalid access token", reason=Reason.TOKEN_INVALID) from exc


class ServiceCredentials:
    """This service's own credential: a short-lived JWT, cached and re-minted early.

    Minted from the service's mounted private key (SERVICE_KEY_FILE); peers
    verify it with the matching `<service>.pem` of SERVICE_PUBLIC_KEYS_DIR.
    """

    def __init__(
        self,
        service: str,
        private_key: ec.EllipticCurvePrivateKey,
        *,
        issuer: str,
        audience: str,
        ttl: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not SERVICE_NAME.match(service):
            raise ValueError(f"invalid service name {service!r}")
        self.service = service
        self._key = private_key
        self._kid = key_id(private_key.public_key())
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self._clock = clock
        self._token = ""
        self._renew_at = 0.0

    def token(self) -> str:
        """The current credential; a new one once four fifths of its life are gone."""
        now = self._clock()
        if not self._token or now >= self._renew_at:
            issued = int(now)
            claims = {
                "iss": self.issuer,
                "aud": self.audience,
                "sub": f"{SERVICE_SUBJECT_PREFIX}{self.service}",
                "jti": uuid.uuid4().hex,
                "iat": issued,
                "nbf": issued,
                "exp": issued + self.ttl,
            }
            self._token = jwt.encode(
                claims, self._key, algorithm=ALGORITHM, headers={"kid": self._kid}
            )
            self._renew_at = issued + self.ttl * 4 / 5
        return self._token


class ServiceTokenVerifier:
    """Verifies service credentials; each public key speaks for one service only."""

    def __init__(
        self,
        public_keys: Mapping[str, ec.EllipticCurvePublicKey],
        *,
        issuer: str,
        audience: str,
        max_lifetime: int = MAX_SERVICE_TOKEN_LIFETIME,
    ) -> None:
        self._keys = dict(public_keys)
        self.issuer = issuer
        self.audience = audience
        self._max_lifetime = max_lifetime

    def verify(self, token: str) -> Caller:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            subject = str(unverified.get("sub", ""))
            service = subject.removeprefix(SERVICE_SUBJECT_PREFIX)
            key = self._keys.get(service) if subject.startswith(SERVICE_SUBJECT_PREFIX) else None
            if key is None:
                raise Unauthenticated(
                    "service credential of an unknown service",
                    reason=Reason.SERVICE_CREDENTIAL_INVALID,
                )
            # The key is chosen by the claimed name: a token for "svc:X" verifies
            # only with X's key, whatever `kid` it names.
            claims = _verified_claims(token, key, issuer=self.issuer, audience=self.audience)
            if int(claims["exp"]) - int(claims["iat"]) > self._max_lifetime:
                raise Unauthenticated(
                    "service credential lives too long", reason=Reason.SERVICE_CREDENTIAL_INVALID
                )
            return Caller(
                user_id=0, session_id=0, token_id=str(claims.get("jti", "")), service=service
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated(
                "service credential expired", reason=Reason.SERVICE_CREDENTIAL_INVALID
            ) from exc
        except (jwt.InvalidTokenError, ValueError, KeyError, TypeError) as exc:
            raise Unauthenticated(
                "invalid service credential", reason=Reason.SERVICE_CREDENTIAL_INVALID
            ) from exc


class CallerVerifier:
    """Verifies whichever bearer a request carries: a user token or a service credential."""

    def __init__(
        self,
        users: TokenVerifier,
        services: ServiceTokenVerifier | None,
        *,
        max_remembered: int = 10_000,
    ) -> None:
        self.users = users
        self.services = services
        # A verified token stays valid until its `exp`: the signature check (an
        # ES256 verify, the largest cost of an internal call) runs once per token,
        # not once per request. Revocation is still checked per request.
        self._verified: dict[str, tuple[Caller, float]] = {}
        self._max_remembered = max_remembered

    def verify(self, token: str) -> Caller:
        remembered = self._verified.get(token)
        if remembered is not None:
            if time.time() < remembered[1]:
                return remembered[0]
            del self._verified[token]
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            subject = str(claims.get("sub", ""))
            expires = float(claims.get("exp", 0))
        except (jwt.InvalidTokenError, TypeError, ValueError) as exc:
            raise Unauthenticated("invalid access token", reason=Reason.TOKEN_INVALID) from exc
        if subject.startswith(SERVICE_SUBJECT_PREFIX):
            if self.services is None:
                raise Unauthenticated(
                    "service credentials are not accepted here", reason=Reason.TOKEN_INVALID
                )
            caller = self.services.verify(token)
        else:
            caller = self.users.verify(token)
        if len(self._verified) >= self._max_remembered:
            self._verified.clear()  # bounded memory; the next requests re-verify
        self._verified[token] = (caller, expires)
        return caller
