"""Access tokens: ES256 JWTs signed by the user service, verified in every service.

RFC 8725: the algorithm is pinned, and `exp`, `iat`, `iss`, `aud` and `sub` are
required and checked (PyJWT skips `aud` and accepts a missing `exp` unless told).
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import Unauthenticated

ALGORITHM = "ES256"


@dataclass(frozen=True)
class Caller:
    """The authenticated identity of the current request."""

    user_id: int
    session_id: int
    token_id: str
    #: The verified token itself, forwarded on calls made on the caller's behalf.
    bearer: str = field(default="", repr=False)


_current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "socialmesh_caller", default=None
)


def current_caller() -> Caller | None:
    """The verified caller of the request being handled, or None if anonymous."""
    return _current_caller.get()


def require_caller() -> Caller:
    caller = _current_caller.get()
    if caller is None:
        raise Unauthenticated("this call needs a valid bearer access token")
    return caller


def forwarded_auth() -> tuple[tuple[str, str], ...]:
    """Metadata for a downstream call made on the current caller's behalf.

    Identity flows as the caller's own token, which the downstream service
    verifies again; an anonymous request stays anonymous downstream.
    """
    caller = _current_caller.get()
    return (("authorization", f"Bearer {caller.bearer}"),) if caller and caller.bearer else ()


def set_caller(caller: Caller | None) -> contextvars.Token[Caller | None]:
    return _current_caller.set(caller)


def reset_caller(token: contextvars.Token[Caller | None]) -> None:
    _current_caller.reset(token)


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """Stable kid: a short hash of the public key, so rotation needs no bookkeeping."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()


def jwks_json(public_keys: list[ec.EllipticCurvePublicKey]) -> str:
    """A JWKS document for the given P-256 public keys (Envoy's local_jwks reads it)."""
    keys = []
    for key in public_keys:
        numbers = key.public_numbers()
        keys.append(
            {
                "kty": "EC",
                "crv": "P-256",
                "alg": ALGORITHM,
                "use": "sig",
                "kid": key_id(key),
                "x": _b64(numbers.x),
                "y": _b64(numbers.y),
            }
        )
    return json.dumps({"keys": keys})


def generate_signing_key(private_path: Path, public_path: Path) -> None:
    """Creates a P-256 key pair unless one exists (first `socialmesh up`)."""
    if private_path.exists() and public_path.exists():
        return
    private_path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    private_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def load_public_key(path: str | Path) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("JWT public key must be an EC P-256 key")
    return key


def load_private_key(path: str | Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("JWT signing key must be an EC P-256 key")
    return key


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
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self._kid})


class TokenVerifier:
    """Verifies access tokens with the public key(s); used by every service."""

    def __init__(
        self, public_keys: list[ec.EllipticCurvePublicKey], *, issuer: str, audience: str
    ) -> None:
        self._keys = {key_id(k): k for k in public_keys}
        self.issuer = issuer
        self.audience = audience

    def verify(self, token: str) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.get(str(header.get("kid", "")))
            if key is None:
                raise Unauthenticated("access token signed by an unknown key")
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
                leeway=5,
            )
            return Caller(
                user_id=int(claims["sub"]),
                session_id=int(claims.get("sid", "0")),
                token_id=str(claims.get("jti", "")),
                bearer=token,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("access token expired") from exc
        except (jwt.InvalidTokenError, ValueError, KeyError) as exc:
            raise Unauthenticated("invalid access token") from exc


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    """Extracts the bearer token from gRPC metadata (`authorization: Bearer ...`)."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization must be 'Bearer <access token>'")
            return token.strip()
    return None


class Revocations:
    """Access tokens that must die before they expire, shared through Redis.

    Tokens are stateless, so a deleted account or a session revoked for
    refresh-token reuse would otherwise keep working for up to the token TTL.
    Entries live exactly that long; every service checks them per request (one
    MGET of two keys).
    """

    def __init__(self, redis: Any, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    async def revoke_user(self, user_id: int) -> None:
        await self._redis.set(f"revoked:user:{user_id}", 1, ex=self._ttl)

    async def revoke_session(self, session_id: int) -> None:
        await self._redis.set(f"revoked:session:{session_id}", 1, ex=self._ttl)

    async def is_revoked(self, caller: Caller) -> bool:
        found = await self._redis.mget(
            [f"revoked:user:{caller.user_id}", f"revoked:session:{caller.session_id}"]
        )
        return any(value is not None for value in found)
