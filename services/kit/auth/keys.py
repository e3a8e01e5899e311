"""The ES256 keys: kids, JWKS, generation and loading (user and service keys)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

#: The one signing algorithm (RFC 8725: pinned, never read from a token).
ALGORITHM = "ES256"
#: A service's name, as its key file (`<name>.pem`) and credential (`svc:<name>`) spell it.
SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


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


def load_service_public_keys(directory: str | Path) -> dict[str, ec.EllipticCurvePublicKey]:
    """Every `<service>.pem` in a directory, by service name (SERVICE_PUBLIC_KEYS_DIR)."""
    keys = {}
    for path in sorted(Path(directory).glob("*.pem")):
        if SERVICE_NAME.match(path.stem):
            keys[path.stem] = load_public_key(path)
    return keys
