"""Copernica's signed callbacks: Digest of the raw body, draft-cavage RSA-SHA256 ``Signature``.

(Being written: see the relay plan. The seam below is fixed.)
"""

from __future__ import annotations

from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey


class KeySource(Protocol):
    def keys(self, key_id: str) -> list[RSAPublicKey]:
        """The public keys that may have signed with ``key_id`` (raises ``SignatureError`` if none)."""
        ...
