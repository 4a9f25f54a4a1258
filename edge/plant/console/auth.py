"""Editing password (hashed, in a file named by the recipe) and login sessions.

The file holds one line ``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>``
(`iad-edge console --hash-password` writes it): the password itself is never
stored. A login gives an HttpOnly, SameSite=Strict cookie with a random token
that lives in this process only (a console restart logs everybody out).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from pathlib import Path

from edge.errors import IadError

SCHEME = "pbkdf2_sha256"
ITERATIONS = 200_000
SESSION_S = 8 * 3600


class ConsoleAuthError(IadError):
    """A password file that cannot be used."""


def hash_password(password: str, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """The line to put in ``console.password_file``."""
    if not password:
        raise ConsoleAuthError("an empty password cannot protect editing: choose one")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def load_password_hash(path: Path) -> str:
    """Read and check the password file (one clear line naming the file when it is unusable)."""
    try:
        line = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConsoleAuthError(f"console.password_file {path}: cannot read it ({exc.strerror or exc})") from None
    parts = line.split("$")
    if len(parts) != 4 or parts[0] != SCHEME or not parts[1].isdigit():
        raise ConsoleAuthError(f"console.password_file {path}: not a {SCHEME} hash line; "
                               "write one with `iad-edge console --hash-password > FILE`")
    return line


def verify_password(password: str, stored: str) -> bool:
    _, iterations, salt, digest = stored.split("$")
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    return hmac.compare_digest(candidate.hex(), digest)


class Sessions:
    """Random session tokens with an expiry; thread-safe."""

    def __init__(self, lifetime_s: float = SESSION_S):
        self.lifetime_s = lifetime_s
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()

    def create(self) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.lifetime_s
        return token

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            expires = self._tokens.get(token)
            if expires is None:
                return False
            if expires < time.monotonic():
                del self._tokens[token]
                return False
            return True

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._tokens.pop(token or "", None)
