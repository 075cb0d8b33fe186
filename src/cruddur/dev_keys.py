"""A local RSA key pair standing in for Cognito's, and tokens signed with it.

For development and tests only: `cruddur dev token` mints access tokens shaped like
Cognito's, and a service without AWS_COGNITO_USER_POOL_ID set reads this pair's public
half (CRUDDUR_HOME/auth/jwks.json), through the same verification code as for Cognito.
The private key never leaves CRUDDUR_HOME/auth (mode 0600). Keys someone else could have
written (a folder or file not yours, or writable by group or others) are refused: whoever
planted them could sign tokens the API accepts.
"""

from __future__ import annotations

import functools
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cruddur.config import AuthSettings
from cruddur.safe_paths import exclusive_lock, private_folder, read_private, write_private


class DevKeys:
    def __init__(self, home: Path) -> None:
        self.folder = home / "auth"
        self.private_path = self.folder / "dev-private-key.pem"
        self.jwks_path = self.folder / "jwks.json"

    def ensure(self) -> DevKeys:
        """Make the pair on first use (once, even when several processes start at once);
        check that only you could have written the folder and the keys."""
        private_folder(self.folder.parent, 0o755)
        private_folder(self.folder)
        if not (self.private_path.exists() and self.jwks_path.exists()):
            with exclusive_lock(self.folder / ".lock"):
                if not (self.private_path.exists() and self.jwks_path.exists()):
                    self._generate()
        read_private(self.private_path)
        read_private(self.jwks_path)
        # Made 0600; one opened up since (chmod 644) is closed again: whoever reads it
        # signs in as anyone, from anywhere the dev key pair is trusted.
        if self.private_path.stat().st_mode & 0o077:
            os.chmod(self.private_path, 0o600)
        return self

    def _generate(self) -> None:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
        public_jwk.update(kid=f"cruddur-dev-{uuid.uuid4().hex[:12]}", alg="RS256", use="sig")
        write_private(self.private_path, pem, mode=0o600)
        write_private(self.jwks_path, json.dumps({"keys": [public_jwk]}).encode(), mode=0o644)

    def kid(self) -> str:
        return json.loads(read_private(self.jwks_path))["keys"][0]["kid"]

    def mint(
        self,
        auth: AuthSettings,
        sub: str,
        *,
        username: str | None = None,
        expires_in: int = 3600,
        claims: dict[str, Any] | None = None,
    ) -> str:
        """An access token like Cognito's for `sub`, signed with the dev private key."""
        self.ensure()
        now = int(time.time())
        payload: dict[str, Any] = {
            "sub": sub,
            "iss": auth.issuer,
            "client_id": auth.client_id,
            "token_use": "access",
            "scope": "aws.cognito.signin.user.admin",
            "auth_time": now,
            "iat": now,
            "exp": now + expires_in,
            "jti": str(uuid.uuid4()),
            "username": username or sub,
            **(claims or {}),
        }
        key = _signing_key(read_private(self.private_path))
        return jwt.encode(payload, key, algorithm="RS256", headers={"kid": self.kid()})


@functools.lru_cache(maxsize=4)
def _signing_key(pem: bytes) -> rsa.RSAPrivateKey:
    """The private key in `pem`, parsed once per content: loading checks the RSA key's
    consistency, ~0.1 s of CPU, which every token paid (a dev sign-in, each test's token).
    Keyed by the file's bytes, read and checked again for every token: a changed key is
    parsed anew."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the dev private key is not an RSA key")
    return key
