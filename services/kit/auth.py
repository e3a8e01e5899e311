"""Who is calling: user access tokens, service credentials, and per-method access.

Two kinds of ES256 JWT, both verified in every service:

* **User access tokens** (`aud` = JWT_AUDIENCE, default "socialmesh-api"), signed
  by the user service; the edge accepts only these.
* **Service credentials** (`sub` = "svc:<name>", `aud` = SERVICE_TOKEN_AUDIENCE,
  default "socialmesh-internal"), minted for a few minutes by each service from
  its own mounted key. The verifier holds every service's public key *by name*
  and checks a "svc:X" token with X's key only, so no service can speak for
  another. They are accepted only by METHOD_ACCESS_INTERNAL methods.

Which of those a method accepts comes from the contract: the
`(socialmesh.api.v1.access)` method option (see `method_access`).

RFC 8725: the algorithm is pinned, and `exp`, `iat`, `iss`, `aud` and `sub` are
required and checked (PyJWT skips `aud` and accepts a missing `exp` unless told).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import descriptor_pool
from socialmesh.api.v1 import access_pb2

from .errors import PermissionDenied, Reason, Unauthenticated
from .tasks import cancel_and_wait

ALGORITHM = "ES256"
#: `sub` of a service credential: "svc:<service name>".
SERVICE_SUBJECT_PREFIX = "svc:"
#: Longest service credential a verifier accepts (exp - iat); minted ones live 5 minutes.
MAX_SERVICE_TOKEN_LIFETIME = 15 * 60
#: RFC 8725 §3.11 explicit typing (RFC 9068's media type): access tokens are minted with
#: this `typ` and only tokens carrying it are accepted as access tokens, so any other JWT
#: ever signed with the same key (an email link, an upload URL) cannot pass as one.
ACCESS_TOKEN_TYPE = "at+jwt"
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")

MethodAccess: TypeAlias = access_pb2.MethodAccess.ValueType
PUBLIC = access_pb2.METHOD_ACCESS_PUBLIC
SIGNED_IN = access_pb2.METHOD_ACCESS_UNSPECIFIED
INTERNAL = access_pb2.METHOD_ACCESS_INTERNAL


@dataclass(frozen=True)
class Caller:
    """The authenticated identity of the current request: a user or a service.

    A service caller has `service` set and `user_id` 0; it acts as itself, never
    for a user.
    """

    user_id: int
    session_id: int
    token_id: str
    #: The verified user token itself, forwarded on calls made on the user's behalf.
    bearer: str = field(default="", repr=False)
    #: The calling service's name for a service credential; empty for users.
    service: str = ""
    #: The token's `exp` (Unix seconds): long-lived streams close before it.
    expires_at: float = 0.0

    @property
    def is_service(self) -> bool:
        return bool(self.service)


_current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "socialmesh_caller", default=None
)


def current_caller() -> Caller | None:
    """The verified caller of the request being handled, or None if anonymous."""
    return _current_caller.get()


def require_caller() -> Caller:
    """The signed-in user making this call (services never act as a user)."""
    caller = _current_caller.get()
    if caller is None:
        raise Unauthenticated(
            "this call needs a valid bearer access token", reason=Reason.TOKEN_MISSING
        )
    if caller.is_service:
        raise PermissionDenied(
            "this call acts for a signed-in user, not a service", reason=Reason.USER_CALLERS_ONLY
        )
    return caller


def require_service() -> Caller:
    """The service making this call; users (and anonymous callers) are refused."""
    caller = _current_caller.get()
    if caller is None:
        raise Unauthenticated("this call needs a service credential", reason=Reason.TOKEN_MISSING)
    if not caller.is_service:
        raise PermissionDenied(
            "only other services may call this method", reason=Reason.SERVICE_CALLERS_ONLY
        )
    return caller


def current_viewer_id() -> int | None:
    """Whose eyes a read is for: the signed-in user's id, None when anonymous.

    The one convention for "nobody signed in" across services (a service caller
    is no viewer either).
    """
    caller = _current_caller.get()
    return caller.user_id if caller is not None and not caller.is_service else None


def forwarded_auth() -> tuple[tuple[str, str], ...]:
    """Metadata for a downstream call made on the current user's behalf.

    Identity flows as the user's own token, which the downstream service
    verifies again. Outbound channels attach it by themselves (see
    `kit.channels.OutboundCall`); an anonymous request and a service caller
    forward nothing.
    """
    caller = _current_caller.get()
    if caller is None or caller.is_service or not caller.bearer:
        return ()
    return (("authorization", f"Bearer {caller.bearer}"),)


@contextlib.contextmanager
def anonymous_calls() -> Iterator[None]:
    """Outbound calls made inside forward no user token.

    For reads that must not depend on who asks (e.g. "does this account exist",
    which a block would otherwise hide). Internal methods still get this
    service's own credential.
    """
    token = _current_caller.set(None)
    try:
        yield
    finally:
        _current_caller.reset(token)


def set_caller(caller: Caller | None) -> contextvars.Token[Caller | None]:
    return _current_caller.set(caller)


def reset_caller(token: contextvars.Token[Caller | None]) -> None:
    try:
        _current_caller.reset(token)
    except ValueError:
        # A stream cancelled by its client is closed from another task's context; the
        # token belongs to the one that ended, so just leave this context anonymous.
        _current_caller.set(None)


_access_by_path: dict[str, MethodAccess] = {}


def method_access(method_path: str) -> MethodAccess:
    """Who may call a gRPC method ("/pkg.Service/Method"), from its contract.

    Reads the `(socialmesh.api.v1.access)` option from the default descriptor
    pool, where a service's generated `_pb2` module registered itself. A method
    the pool does not know (yet) is SIGNED_IN, the strictest level a user passes.
    """
    known = _access_by_path.get(method_path)
    if known is not None:
        return known
    service_name, _, method_name = method_path.strip("/").partition("/")
    try:
        service = descriptor_pool.Default().FindServiceByName(service_name)
    except KeyError:
        return SIGNED_IN
    method = service.methods_by_name.get(method_name)
    if method is None:
        return SIGNED_IN
    access = method.GetOptions().Extensions[access_pb2.access]
    _access_by_path[method_path] = access
    return access


def service_methods_access(grpc_services: Iterable[str]) -> dict[str, MethodAccess]:
    """Access level of every method of the given (served) gRPC services, by path."""
    found: dict[str, MethodAccess] = {}
    for name in grpc_services:
        service = descriptor_pool.Default().FindServiceByName(name)
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            found[path] = method_access(path)
    return found


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
    public_path.parent.mkdir(parents=True, exist_ok=True)
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


def load_public_keys(paths: str | Path) -> list[ec.EllipticCurvePublicKey]:
    """Every key of a comma-separated list of PEM files (JWT_PUBLIC_KEY_FILE).

    Several keys make rotation possible without a flag day: verifiers (edge and
    services) accept tokens of any listed key by its `kid`; the signer switches to
    the new private key; the old public key is dropped once its last token expired.
    """
    files = [p.strip() for p in str(paths).split(",") if p.strip()]
    if not files:
        raise ValueError("no public key file given")
    return [load_public_key(f) for f in files]


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
        if not _SERVICE_NAME.match(service):
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


def load_service_public_keys(directory: str | Path) -> dict[str, ec.EllipticCurvePublicKey]:
    """Every `<service>.pem` in a directory, by service name (SERVICE_PUBLIC_KEYS_DIR)."""
    keys = {}
    for path in sorted(Path(directory).glob("*.pem")):
        if _SERVICE_NAME.match(path.stem):
            keys[path.stem] = load_public_key(path)
    return keys


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    """Extracts the bearer token from gRPC metadata (`authorization: Bearer ...`)."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated(
                    "authorization must be 'Bearer <access token>'", reason=Reason.TOKEN_INVALID
                )
            return token.strip()
    return None


class Revocations:
    """Access tokens that must die before they expire, shared through Redis.

    Tokens are stateless, so a deleted account or a session revoked for
    refresh-token reuse would otherwise keep working for up to the token TTL.
    Entries live exactly that long (`revoked:user:<id>`, `revoked:session:<id>`).

    Every service checks them on every request, so the check is a local lookup:
    each process mirrors the revoked ids in memory, fed by a pub/sub channel
    (a revocation reaches every process at once) and by full loads of the index
    `revocations:v1:index` (a sorted set of live revocations by expiry, written
    with the keys; loaded on (re)subscribing, and every `reload_seconds` to heal
    what pub/sub dropped: it delivers at most once). Until the subscription is
    live and loaded (not started, starting, or reconnecting), `is_revoked` asks
    Redis, as before, so no revocation is ever missed.
    """

    #: Pub/sub channel of revocations; messages are `user:<id>` / `session:<id>`.
    CHANNEL = "revocations:v1"
    #: Live revocations, `user:<id>` / `session:<id>` scored by expiry (Unix ms).
    INDEX = "revocations:v1:index"
    _KINDS = ("user", "session")
    _log = logging.getLogger("socialmesh.revocations")

    def __init__(
        self,
        redis: Any,
        ttl_seconds: int,
        *,
        reload_seconds: float = 30.0,
        ping_seconds: float = 15.0,
    ) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._reload_seconds = reload_seconds
        self._ping_seconds = ping_seconds
        # kind -> id -> time.monotonic() at which the entry expires.
        self._revoked: dict[str, dict[int, float]] = {kind: {} for kind in self._KINDS}
        self._healthy = False
        self._changed = asyncio.Event()  # set whenever `_healthy` flips
        self._tasks: list[asyncio.Task[None]] = []
        #: (kind, id) -> events of open streams to wake when that id is revoked.
        self._watchers: dict[tuple[str, int], set[asyncio.Event]] = {}

    @property
    def healthy(self) -> bool:
        """True while the local mirror is complete (subscribed and loaded)."""
        return self._healthy

    def start(self) -> None:
        """Starts mirroring; until the first load completes, checks ask Redis."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._subscription(), name="revocations-listen"),
                asyncio.create_task(self._reloads(), name="revocations-reload"),
            ]

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []
        self._set_healthy(False)

    async def until_healthy(self) -> None:
        """Returns once checks are local (callers bound the wait with a timeout)."""
        while not self._healthy:
            self._changed.clear()
            await self._changed.wait()

    def watch(self, caller: Caller, wake: asyncio.Event) -> Callable[[], None]:
        """Sets `wake` as soon as this process learns that the caller's account or session
        is revoked (its own revocation, or the pub/sub message from the process that made
        it): a long-lived stream re-checks and ends within a moment, not at its next
        heartbeat. Returns the function that stops watching (call it when the stream ends).
        """
        keys = [("user", caller.user_id), ("session", caller.session_id)]
        for key in keys:
            self._watchers.setdefault(key, set()).add(wake)

        def unwatch() -> None:
            for key in keys:
                watching = self._watchers.get(key)
                if watching is not None:
                    watching.discard(wake)
                    if not watching:
                        del self._watchers[key]

        return unwatch

    async def revoke_user(self, user_id: int) -> None:
        await self._revoke("user", user_id)

    async def revoke_session(self, session_id: int) -> None:
        await self._revoke("session", session_id)

    async def _revoke(self, kind: str, ident: int) -> None:
        # Local first: this process refuses the token from now on, whatever happens next.
        self._remember(kind, ident, time.monotonic() + self._ttl)
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(f"revoked:{kind}:{ident}", 1, ex=self._ttl)
        pipe.zadd(self.INDEX, {f"{kind}:{ident}": (time.time() + self._ttl) * 1000})
        await pipe.execute()
        await self._redis.publish(self.CHANNEL, f"{kind}:{ident}")

    async def is_revoked(self, caller: Caller) -> bool:
        return await self.revoked_reason(caller) is not None

    async def revoked_reason(self, caller: Caller) -> Reason | None:
        """Why the caller's token no longer counts: TOKEN_REVOKED (the account was
        deleted) or SESSION_ENDED (signed out, or the session was revoked); None if live."""
        if self._held("user", caller.user_id):
            return Reason.TOKEN_REVOKED
        if self._held("session", caller.session_id):
            return Reason.SESSION_ENDED
        if self._healthy:
            return None
        user, session = await self._redis.mget(
            [f"revoked:user:{caller.user_id}", f"revoked:session:{caller.session_id}"]
        )
        if user is not None:
            return Reason.TOKEN_REVOKED
        return Reason.SESSION_ENDED if session is not None else None

    def _held(self, kind: str, ident: int) -> bool:
        entries = self._revoked[kind]
        expires = entries.get(ident)
        if expires is None:
            return False
        if expires <= time.monotonic():
            entries.pop(ident, None)  # lazily pruned; `_load` sweeps the rest
            return False
        return True

    def _remember(self, kind: str, ident: int, expires: float) -> None:
        entries = self._revoked[kind]
        entries[ident] = max(expires, entries.get(ident, expires))
        for wake in self._watchers.get((kind, ident), ()):
            wake.set()

    def _parse(self, entry: bytes | str) -> tuple[str, int] | None:
        """(kind, id) of `user:<id>` / `session:<id>`; None if it is neither."""
        text = entry.decode() if isinstance(entry, bytes) else entry
        kind, _, ident = text.partition(":")
        if kind in self._revoked and ident.isdigit():
            return kind, int(ident)
        return None

    def _apply(self, data: bytes | str) -> None:
        parsed = self._parse(data)
        if parsed is None:
            self._log.warning("ignoring malformed revocation message %r", data)
        else:
            self._remember(*parsed, time.monotonic() + self._ttl)

    def _set_healthy(self, healthy: bool) -> None:
        if healthy != self._healthy:
            self._healthy = healthy
            self._changed.set()

    async def _load(self) -> None:
        """Merges the index's live revocations into the mirror (and trims the index).

        Merging, never replacing: a message applied while the load runs stays.
        """
        now_ms = time.time() * 1000
        pipe = self._redis.pipeline(transaction=False)
        pipe.zremrangebyscore(self.INDEX, "-inf", now_ms)
        pipe.zrangebyscore(self.INDEX, now_ms, "+inf", withscores=True)
        _, rows = await pipe.execute()
        now = time.monotonic()
        for member, expires_ms in rows:
            parsed = self._parse(member)
            if parsed is not None:
                self._remember(*parsed, now + (float(expires_ms) - now_ms) / 1000)
        for entries in self._revoked.values():
            for ident in [i for i, expires in entries.items() if expires <= now]:
                del entries[ident]

    async def _subscription(self) -> None:
        """Subscribes, loads, then applies messages; after any failure starts over."""
        delay = 0.2
        while True:
            began = time.monotonic()
            try:
                await self._subscribed_session()
            except Exception:
                self._log.warning(
                    "revocation subscription lost; checking Redis until it is back", exc_info=True
                )
            if time.monotonic() - began > 60:
                delay = 0.2  # it had been working: a fresh outage
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _subscribed_session(self) -> None:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self.CHANNEL)
            # Subscribed *before* loading: a revocation published during the load
            # waits in the socket instead of falling between the two.
            async with asyncio.timeout(10):
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "subscribe":
                        break
            await self._load()
            self._set_healthy(True)
            await self._listen(pubsub)
        finally:
            self._set_healthy(False)
            await pubsub.aclose()

    async def _listen(self, pubsub: Any) -> None:
        heard = time.monotonic()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=self._ping_seconds)
            now = time.monotonic()
            if message is not None:
                heard, pinged = now, False
                if message["type"] == "message":
                    self._apply(message["data"])
                elif message["type"] == "subscribe":
                    # redis-py reconnected and resubscribed by itself: messages
                    # may have been lost in between, so start over (and reload).
                    raise ConnectionError("revocation subscription was re-established")
            elif now - heard >= self._ping_seconds:
                # A silent channel or a dead connection? A PING on it tells.
                if pinged:
                    raise ConnectionError("revocation subscription does not answer PING")
                await pubsub.ping()
                heard, pinged = now, True

    async def _reloads(self) -> None:
        """Full reloads while healthy: heals any message pub/sub dropped."""
        while True:
            await asyncio.sleep(self._reload_seconds)
            if not self._healthy:
                continue  # the subscription reloads when it is back
            try:
                await self._load()
            except Exception:
                self._log.warning("periodic revocation reload failed", exc_info=True)
