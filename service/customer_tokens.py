"""Customer access tokens: JWTs issued by the deployer's identity service,
verified here with PyJWT. Configured in the auth file:

    [customer_tokens]
    algorithm = "HS256"              # HS256/384/512: with secret
    secret = "..."                   # at least as many bytes as the hash (32 for HS256)
    # algorithm = "RS256"            # RS*, PS*, ES256/384/512, EdDSA: with a public key,
    # public_key_file = "idp.pem"    # a PEM file (relative to the working directory)
    # public_key = "-----BEGIN PUBLIC KEY-----\\n..."   # or the PEM itself
    # issuer = "https://idp.example"  # optional: the iss claim must be this
    # audience = "sessionstore"       # optional: the aud claim must hold this
    # leeway_s = 30                   # optional: clock skew allowed on exp/nbf/iat

Claims read: ``tenant``; the session id from ``sessionId`` (also ``session_id``
or ``sid``); ``customerId`` (absent, or null, for an anonymous session);
``exp``, ``nbf`` and ``iat`` are checked when present. The algorithm is fixed
by the configuration, never taken from the token, so ``alg: none`` and
algorithm-confusion tokens are refused.

A bad section raises CustomerTokenConfigError (an AuthFileError) when the
app is built, not when a request comes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from .auth import AuthConfig, AuthFileError

SECTION = "customer_tokens"
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
ALGORITHMS = HMAC_ALGORITHMS + ASYMMETRIC_ALGORITHMS
KNOWN_SETTINGS = frozenset({"algorithm", "secret", "public_key", "public_key_file", "issuer", "audience", "leeway_s"})
SESSION_CLAIMS = ("sessionId", "session_id", "sid")
PRIVATE_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)


class CustomerTokenConfigError(AuthFileError):
    """The [customer_tokens] section cannot be used; the message says why."""


class InvalidCustomerToken(Exception):
    """A presented token is not a valid customer token; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class CustomerToken:
    tenant: str
    session_id: str | None  # None: the token names no session
    customer_id: str | None  # None: an anonymous session


@dataclass(frozen=True)
class CustomerTokens:
    """The verifier of one configuration."""

    algorithm: str
    key: Any  # HMAC secret (bytes) or a cryptography public key
    issuer: str | None = None
    audience: str | None = None
    leeway_s: float = 0

    def verify(self, token: str) -> CustomerToken:
        """The claims of a valid token; InvalidCustomerToken otherwise."""
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway_s,
                options={"verify_aud": self.audience is not None, "enforce_minimum_key_length": True},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidCustomerToken("the customer token has expired") from None
        except jwt.InvalidSignatureError:
            raise InvalidCustomerToken("the customer token's signature is not valid") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidCustomerToken(f"the customer token must be signed with {self.algorithm}") from None
        except jwt.PyJWTError as exc:
            raise InvalidCustomerToken(f"invalid customer token: {exc}") from None
        except (ValueError, TypeError, KeyError):  # whatever a malformed token may still provoke
            raise InvalidCustomerToken("invalid customer token") from None
        tenant = claims.get("tenant")
        if not isinstance(tenant, str) or not tenant:
            raise InvalidCustomerToken("the customer token has no 'tenant' claim")
        session_id = None
        for name in SESSION_CLAIMS:
            if claims.get(name) is not None:
                session_id = claims[name]
                if not isinstance(session_id, str) or not session_id:
                    raise InvalidCustomerToken(f"the customer token's '{name}' claim must be a non-empty string")
                break
        customer_id = claims.get("customerId")
        if isinstance(customer_id, int) and not isinstance(customer_id, bool):
            customer_id = str(customer_id)
        elif customer_id is not None and (not isinstance(customer_id, str) or not customer_id):
            raise InvalidCustomerToken("the customer token's 'customerId' claim must be a non-empty string")
        return CustomerToken(tenant, session_id, customer_id)


def from_auth(auth: AuthConfig | None) -> CustomerTokens | None:
    """The verifier the auth file configures; None when it has no [customer_tokens]."""
    if auth is None:
        return None
    return from_document(auth.document)


def from_document(document: Mapping[str, Any]) -> CustomerTokens | None:
    section = document.get(SECTION)
    if section is None:
        return None
    where = f"[{SECTION}]"
    if not isinstance(section, Mapping):
        raise CustomerTokenConfigError(f"{where} must be a table")
    unknown = sorted(set(section) - KNOWN_SETTINGS)
    if unknown:
        raise CustomerTokenConfigError(
            f"{where}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(KNOWN_SETTINGS))})"
        )
    algorithm = section.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise CustomerTokenConfigError(
            f"{where}: 'algorithm' must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}"
        )
    implementation = jwt.get_algorithm_by_name(algorithm)
    if algorithm in HMAC_ALGORITHMS:
        if "public_key" in section or "public_key_file" in section:
            raise CustomerTokenConfigError(f"{where}: {algorithm} takes a 'secret', not a public key")
        secret = section.get("secret")
        if not isinstance(secret, str) or not secret:
            raise CustomerTokenConfigError(f"{where}: {algorithm} needs a non-empty 'secret'")
        try:
            key: Any = implementation.prepare_key(secret)
        except jwt.InvalidKeyError as exc:
            raise CustomerTokenConfigError(f"{where}: unusable 'secret': {exc}") from None
    else:
        if "secret" in section:
            raise CustomerTokenConfigError(
                f"{where}: {algorithm} takes a public key ('public_key_file' or 'public_key'), not a 'secret'"
            )
        pem = _public_key_text(section, where)
        try:
            key = implementation.prepare_key(pem)
        except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
            raise CustomerTokenConfigError(
                f"{where}: the public key is not a PEM {algorithm} public key ({exc})"
            ) from None
        except Exception as exc:  # noqa: BLE001 - cryptography's own errors, e.g. an unsupported key type
            raise CustomerTokenConfigError(f"{where}: the public key cannot be used with {algorithm} ({exc})") from None
        if isinstance(key, PRIVATE_KEY_TYPES):
            raise CustomerTokenConfigError(f"{where}: give the identity service's public key, not a private key")
    weak = implementation.check_key_length(key)
    if weak:
        raise CustomerTokenConfigError(f"{where}: {weak}")
    issuer, audience = section.get("issuer"), section.get("audience")
    for name, value in (("issuer", issuer), ("audience", audience)):
        if value is not None and (not isinstance(value, str) or not value):
            raise CustomerTokenConfigError(f"{where}: '{name}' must be a non-empty string")
    leeway = section.get("leeway_s", 0)
    if isinstance(leeway, bool) or not isinstance(leeway, int | float) or not 0 <= leeway <= 3600:
        raise CustomerTokenConfigError(f"{where}: 'leeway_s' must be a number of seconds from 0 to 3600")
    return CustomerTokens(algorithm, key, issuer, audience, float(leeway))


def _public_key_text(section: Mapping[str, Any], where: str) -> str:
    inline, path = section.get("public_key"), section.get("public_key_file")
    if (inline is None) == (path is None):
        raise CustomerTokenConfigError(f"{where}: give exactly one of 'public_key_file' and 'public_key'")
    if inline is not None:
        if not isinstance(inline, str) or not inline.strip():
            raise CustomerTokenConfigError(f"{where}: 'public_key' must be the PEM text of a public key")
        return inline
    if not isinstance(path, str) or not path:
        raise CustomerTokenConfigError(f"{where}: 'public_key_file' must be a file name")
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CustomerTokenConfigError(f"{where}: cannot read public_key_file {path}: {exc}") from None
