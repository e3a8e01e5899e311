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

One job per module: `callers` (the current caller, what is forwarded),
`access` (who may call a method), `keys` (ES256 keys and JWKS), `tokens`
(minting and verifying both kinds), `revocations` (tokens that die early).
Callers import from `services.kit.auth`; the modules are its parts.
"""

from __future__ import annotations

from .access import INTERNAL, PUBLIC, SIGNED_IN, MethodAccess, method_access, service_methods_access
from .callers import (
    Caller,
    anonymous_calls,
    bearer_token,
    current_caller,
    current_viewer_id,
    forwarded_auth,
    require_caller,
    require_service,
    reset_caller,
    set_caller,
)
from .keys import (
    ALGORITHM,
    generate_signing_key,
    jwks_json,
    key_id,
    load_private_key,
    load_public_key,
    load_public_keys,
    load_service_public_keys,
)
from .revocations import Revocations
from .tokens import (
    ACCESS_TOKEN_TYPE,
    MAX_SERVICE_TOKEN_LIFETIME,
    SERVICE_SUBJECT_PREFIX,
    CallerVerifier,
    ServiceCredentials,
    ServiceTokenVerifier,
    TokenSigner,
    TokenVerifier,
)

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "ALGORITHM",
    "INTERNAL",
    "MAX_SERVICE_TOKEN_LIFETIME",
    "PUBLIC",
    "SERVICE_SUBJECT_PREFIX",
    "SIGNED_IN",
    "Caller",
    "CallerVerifier",
    "MethodAccess",
    "Revocations",
    "ServiceCredentials",
    "ServiceTokenVerifier",
    "TokenSigner",
    "TokenVerifier",
    "anonymous_calls",
    "bearer_token",
    "current_caller",
    "current_viewer_id",
    "forwarded_auth",
    "generate_signing_key",
    "jwks_json",
    "key_id",
    "load_private_key",
    "load_public_key",
    "load_public_keys",
    "load_service_public_keys",
    "method_access",
    "require_caller",
    "require_service",
    "reset_caller",
    "service_methods_access",
    "set_caller",
]
