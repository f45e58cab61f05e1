"""The box's Ed25519 signing key: created once, kept private (0600), refused when exposed."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from evidence.fsutil import fsync_dir, write_atomic


class KeyFileError(RuntimeError):
    """The key file cannot be used (exposed permissions, unreadable, not an Ed25519 key)."""


def _public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public: Ed25519PublicKey) -> str:
    """Short fingerprint: the first 16 hex digits of SHA-256 over the raw public key."""
    return hashlib.sha256(_public_raw(public)).hexdigest()[:16]


def key_id_of_b64(public_b64: str) -> str:
    """The fingerprint of a raw Ed25519 public key in base64 (as a manifest's signer names it);
    ValueError when it is not one."""
    try:
        raw = base64.b64decode(public_b64, validate=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not base64: {exc}") from None
    return key_id_of(Ed25519PublicKey.from_public_bytes(raw))


@dataclass(frozen=True)
class Verifier:
    public_key: Ed25519PublicKey

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_key)

    @property
    def public_b64(self) -> str:
        return base64.b64encode(_public_raw(self.public_key)).decode()

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self.public_key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    @classmethod
    def from_pem(cls, path: str | Path) -> Verifier:
        path = Path(path)
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"{path}: cannot read the public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"{path}: not an Ed25519 public key")
        return cls(key)

    @classmethod
    def from_b64(cls, value: str) -> Verifier:
        return cls(Ed25519PublicKey.from_public_bytes(base64.b64decode(value)))


class Signer:
    """Signs manifests with the box key. `Signer.load_or_create(path)` on start-up."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.verifier = Verifier(private_key.public_key())

    @property
    def key_id(self) -> str:
        return self.verifier.key_id

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def public_pem(self) -> bytes:
        return self.verifier.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def load_or_create(cls, path: str | Path) -> Signer:
        """Load the key at `path`, creating it (0600, atomically) on first run.

        Refuses a key file that group or others may read: a leaked key forges evidence.
        The public half is written next to it as `<path>.pub` for verifiers.
        """
        path = Path(path)
        if not path.exists():
            _create(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"evidence key {path} is readable or writable by group/others (mode {mode:04o}); "
                f"refusing to sign with an exposed key. Run: chmod 600 {path}"
            )
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise KeyFileError(f"evidence key {path}: cannot load it: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"evidence key {path}: not an Ed25519 private key")
        signer = cls(key)
        pub = public_key_path(path)
        if not pub.exists() or pub.read_bytes() != signer.public_pem():
            write_atomic(pub, signer.public_pem(), mode=0o644)
        return signer


def public_key_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".pub")


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link, not rename: two processes starting at once must not replace each other's key
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    fsync_dir(path.parent)
