"""The box key: created once with 0600, refused when exposed, the same key after restart."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from evidence.keys import KeyFileError, Signer, Verifier, public_key_path

REPO = Path(__file__).resolve().parents[2]


def test_created_private_then_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "box.pem"
    signer = Signer.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(public_key_path(path).stat().st_mode) == 0o644
    again = Signer.load_or_create(path)
    assert again.key_id == signer.key_id
    signature = signer.sign(b"manifest")
    assert Verifier.from_pem(public_key_path(path)).verify(signature, b"manifest")
    assert not Verifier.from_pem(public_key_path(path)).verify(signature, b"manifest!")
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_exposed_key_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "box.pem"
    Signer.load_or_create(path)
    path.chmod(mode)
    with pytest.raises(KeyFileError) as info:
        Signer.load_or_create(path)
    message = str(info.value)
    assert str(path) in message and f"{mode:04o}" in message and "chmod 600" in message


def test_not_a_key(tmp_path: Path) -> None:
    path = tmp_path / "box.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n")
    os.close(fd)
    with pytest.raises(KeyFileError, match="cannot load it"):
        Signer.load_or_create(path)


def test_racing_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    """Several processes creating the key at once: all end up signing with the same key."""
    path = tmp_path / "box.pem"
    code = (
        "import sys; from evidence.keys import Signer; "
        "print(Signer.load_or_create(sys.argv[1]).key_id)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    ids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(ids) == 1 and ids == {Signer.load_or_create(path).key_id}
