"""Keys derived from the deployment's configuration, never stored beside the data they protect.

One key material (``ALISMS_ENCRYPTION_KEY``, else ``SECRET_KEY``) yields two independent keys
through HKDF: a Fernet key that encrypts secret parameters at rest, and an HMAC key that turns
verification codes into digests. Older materials in ``ALISMS_ENCRYPTION_KEY_FALLBACKS`` still
decrypt, so a key can be rotated without downtime.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .exceptions import DecryptionError

_SALT = b"flask-alisms"



def _derive(material: str | bytes, purpose: bytes) -> bytes:
    raw = material.encode() if isinstance(material, str) else material
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=purpose).derive(raw)


class Keyring:
    """Encrypts parameter values and digests codes with keys derived from configuration."""

    def __init__(self, material: str | bytes, fallbacks: Sequence[str | bytes] = ()) -> None:
        fernets = [
            Fernet(base64.urlsafe_b64encode(_derive(item, b"parameter-encryption")))
            for item in (material, *fallbacks)
        ]
        self._fernet = MultiFernet(fernets)
        self._code_key = _derive(material, b"code-digest")
        self._subject_key = _derive(material, b"limit-subject")
        self._fingerprint_key = _derive(material, b"fingerprint")

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError, ValueError) as exc:
            raise DecryptionError(
                "A stored secret cannot be decrypted with ALISMS_ENCRYPTION_KEY: if the key was "
                "changed, put the previous one in ALISMS_ENCRYPTION_KEY_FALLBACKS and run "
                "`flask alisms rotate-key`, or set the secret again in the panel."
            ) from exc

    def rotate(self, token: str) -> str:
        """Re-encrypt a token under the current key (it may have been made with a fallback)."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, ValueError) as exc:
            raise DecryptionError(
                "A stored secret cannot be decrypted with the current key or any fallback."
            ) from exc

    def code_digest(self, phone: str, purpose: str, code: str) -> str:
        """Digest binding a code to its phone and purpose; a database leak reveals no code."""
        message = f"{purpose}\x00{phone}\x00{code}".encode()
        return hmac.new(self._code_key, message, hashlib.sha256).hexdigest()

    def subject_digest(self, kind: str, value: str) -> str:
        """A stable pseudonym for a number or a client network in limit keys and the send log.

        Budgets are rebuilt from the log, which must not hold full numbers; keyed, so a
        leaked log or Redis dump cannot be reversed by hashing every possible number.
        """
        message = f"{kind}\x00{value}".encode()
        return hmac.new(self._subject_key, message, hashlib.sha256).hexdigest()[:32]

    def fingerprint(self, *parts: str) -> str:
        """A keyed digest of several values (a cache key that reveals none of them)."""
        message = "\x00".join(parts).encode()
        return hmac.new(self._fingerprint_key, message, hashlib.sha256).hexdigest()
