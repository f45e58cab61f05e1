"""The console's users: the store (real argon2), its file, and `streetwatch users`."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from argon2 import PasswordHasher
from click.testing import CliRunner, Result

from ingest.config import load_config
from streetwatch.cli import cli
from streetwatch.users import Role, UserError, UserStore
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("keep_root_logging")

GOOD = "correct horse battery"
CHEAP = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
"""Real argon2id, cheaper than the default so the store tests stay quick."""


def site(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text(f"site:\n  id: t\ndevices: []\n{extra}", encoding="utf-8")
    return path


def users(config: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["users", *args, "-c", str(config)], input=stdin)


def store(tmp_path: Path, hasher: PasswordHasher = CHEAP) -> UserStore:
    return UserStore(tmp_path / "var" / "users.yaml", hasher=hasher)


# the config section


def test_users_file_defaults_under_the_storage_root_and_explicit_paths_follow_devices_yaml(
    tmp_path: Path,
) -> None:
    config = load_config(site(tmp_path))
    assert config.console.users_file == tmp_path / "var" / "users.yaml"
    assert config.console.min_password_length == 12
    moved = load_config(site(tmp_path, "storage:\n  root: data\n"))
    assert moved.console.users_file == tmp_path / "data" / "users.yaml"
    named = load_config(
        site(tmp_path, "console:\n  users_file: etc/people.yaml\n  min_password_length: 16\n")
    )
    assert named.console.users_file == tmp_path / "etc" / "people.yaml"
    assert named.console.min_password_length == 16


def test_console_section_refuses_unknown_keys_and_weak_minimums(tmp_path: Path) -> None:
    from ingest.yamlsource import ConfigError

    with pytest.raises(ConfigError, match=r"console\.min_password_length"):
        load_config(site(tmp_path, "console:\n  min_password_length: 4\n"))
    with pytest.raises(ConfigError, match=r"console\.user_file"):
        load_config(site(tmp_path, "console:\n  user_file: x.yaml\n"))


# the store


def test_add_then_verify_right_wrong_and_unknown(tmp_path: Path) -> None:
    s = store(tmp_path)
    added = s.add("alice", "operator", GOOD)
    assert added.role is Role.OPERATOR
    assert added.hash.startswith("$argon2id$")
    assert GOOD not in s.path.read_text()
    user = s.verify("alice", GOOD)
    assert user is not None and user.name == "alice"
    assert s.verify("alice", GOOD + "!") is None
    assert s.verify("bob", GOOD) is None
    assert s.verify("../etc", GOOD) is None
    assert s.verify("alice", "x" * 5000) is None


def test_unknown_user_is_checked_against_a_dummy_hash(tmp_path: Path) -> None:
    seen: list[str] = []

    class Spy(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            seen.append(str(hash))
            return super().verify(hash, password)

    s = store(tmp_path, Spy(time_cost=1, memory_cost=8 * 1024, parallelism=1))
    s.add("alice", "viewer", GOOD)
    assert s.verify("nobody", GOOD) is None
    [digest] = seen
    assert digest.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert digest != s.get("alice").hash  # type: ignore[union-attr]


def test_verify_rehashes_when_argon2_parameters_change(tmp_path: Path) -> None:
    store(tmp_path).add("alice", "admin", GOOD)
    old = store(tmp_path).get("alice").hash  # type: ignore[union-attr]
    stronger = PasswordHasher(time_cost=2, memory_cost=8 * 1024, parallelism=1)
    s = store(tmp_path, stronger)
    assert stronger.check_needs_rehash(old)
    user = s.verify("alice", GOOD)
    assert user is not None and "t=2" in user.hash
    stored = s.get("alice").hash  # type: ignore[union-attr]
    assert stored == user.hash != old
    assert not stronger.check_needs_rehash(stored)
    assert s.verify("alice", GOOD) is not None
    # a wrong password never rewrites the file
    before = s.path.stat().st_mtime_ns
    assert store(tmp_path).verify("alice", "wrong wrong wrong") is None
    assert s.path.stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("name", "role", "password", "message"),
    [
        ("../x", "viewer", GOOD, "bad user name '../x'"),
        ("", "viewer", GOOD, "bad user name ''"),
        ("a b", "viewer", GOOD, "bad user name"),
        ("alice", "root", GOOD, "unknown role 'root' (one of viewer, operator, admin)"),
        ("alice", "viewer", "", "the password is empty"),
        ("alice", "viewer", "short", "the password is 5 characters; the minimum is 12"),
        ("alice", "viewer", "x" * 1025, "longer than 1024 characters"),
    ],
)
def test_store_refusals(tmp_path: Path, name: str, role: str, password: str, message: str) -> None:
    s = store(tmp_path)
    with pytest.raises(UserError, match=re.escape(message)):
        s.add(name, role, password)
    assert not s.path.exists()


def test_duplicate_names_remove_and_passwd(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.add("alice", "viewer", GOOD)
    with pytest.raises(UserError, match="user 'alice' already exists"):
        s.add("ALICE", "admin", GOOD)
    with pytest.raises(UserError, match="no user 'bob'"):
        s.remove("bob")
    with pytest.raises(UserError, match="no user 'bob'"):
        s.set_password("bob", GOOD)
    s.set_password("alice", "another long password")
    assert s.verify("alice", GOOD) is None
    assert s.verify("alice", "another long password") is not None
    s.remove("alice")
    assert s.users() == []


def test_file_is_written_atomically_with_mode_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = store(tmp_path)
    s.add("alice", "admin", GOOD)
    assert stat.S_IMODE(s.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(s.path.parent.stat().st_mode) == 0o700
    before = s.path.read_bytes()
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))

    def crash(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        s.add("bob", "viewer", GOOD)
    assert synced  # the temp file reached the disk before the rename
    assert s.path.read_bytes() == before  # the old file is whole
    assert sorted(p.name for p in s.path.parent.iterdir()) == ["users.yaml", "users.yaml.lock"]


def test_refuses_a_group_writable_or_broken_file(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.add("alice", "admin", GOOD)
    s.path.chmod(0o664)
    unsafe = r"open to group or others .*chmod 600 it .anyone who can write it could make"
    with pytest.raises(UserError, match=unsafe):
        s.verify("alice", GOOD)
    s.path.chmod(0o600)
    doc = yaml.safe_load(s.path.read_text())
    doc["users"][0]["hash"] = "plain-text"
    s.path.write_text(yaml.safe_dump(doc))
    with pytest.raises(UserError, match=r"unreadable users file \(users.0.hash: .*argon2"):
        s.users()


# the command line


def test_cli_add_with_hidden_prompt_list_and_remove(tmp_path: Path) -> None:
    config = site(tmp_path)
    result = users(config, "add", "alice", "--role", "admin", stdin=f"{GOOD}\n{GOOD}\n")
    assert result.exit_code == 0, result.output
    assert GOOD not in result.output  # the prompt does not echo
    assert result.output.strip().endswith("added alice (admin)")
    listed = users(config, "list", "--json")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert row["name"] == "alice" and row["role"] == "admin" and "hash" not in row
    plain = users(config, "list")
    assert plain.stdout.startswith("alice\tadmin\t") and "argon2" not in plain.stdout
    assert users(config, "remove", "alice").exit_code == 0
    assert json.loads(users(config, "list", "--json").stdout) == []


def test_cli_prompt_confirmation_must_match(tmp_path: Path) -> None:
    config = site(tmp_path)
    result = users(config, "add", "alice", "--role", "viewer", stdin=f"{GOOD}\n{GOOD}x\n")
    assert result.exit_code != 0
    assert "do not match" in result.output
    assert not (tmp_path / "var" / "users.yaml").exists()


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["add", "a/b", "--role", "viewer", "--password-stdin"], GOOD, "bad user name 'a/b'"),
        (["add", "bob", "--role", "viewer", "--password-stdin"], "\n", "the password is empty"),
        (
            ["add", "bob", "--role", "viewer", "--password-stdin"],
            "short\n",
            "the password is 5 characters; the minimum is 12",
        ),
        (["add", "alice", "--role", "viewer", "--password-stdin"], GOOD, "'alice' already exists"),
        (["add", "bob", "--role", "king", "--password-stdin"], GOOD, "'king' is not one of"),
        (["remove", "bob"], None, "no user 'bob'"),
        (["passwd", "bob", "--password-stdin"], GOOD, "no user 'bob'"),
        (["passwd", "alice", "--password-stdin"], "tiny\n", "the minimum is 12"),
    ],
)
def test_cli_refusals_exit_nonzero_with_a_reason(
    tmp_path: Path, args: list[str], stdin: str | None, message: str
) -> None:
    config = site(tmp_path)
    added = users(config, "add", "alice", "--role", "viewer", "--password-stdin", stdin=GOOD)
    assert added.exit_code == 0, added.output
    before = (tmp_path / "var" / "users.yaml").read_bytes()
    result = users(config, *args, stdin=stdin)
    assert result.exit_code != 0
    assert message in result.stderr.strip().splitlines()[-1]
    assert (tmp_path / "var" / "users.yaml").read_bytes() == before


def test_cli_has_no_password_argument(tmp_path: Path) -> None:
    result = users(site(tmp_path), "add", "alice", "--role", "viewer", "--password", GOOD)
    assert result.exit_code == 2 and "No such option '--password'" in result.stderr


def test_cli_passwd_then_verify(tmp_path: Path) -> None:
    config = site(tmp_path, "console:\n  users_file: people.yaml\n  min_password_length: 8\n")
    short = users(config, "add", "op1", "--role", "operator", "--password-stdin", stdin="seven!!")
    assert short.exit_code == 1 and "the minimum is 8" in short.stderr
    result = users(config, "add", "op1", "--role", "operator", "--password-stdin", stdin="8chars!!")
    assert result.exit_code == 0, result.output
    changed = users(config, "passwd", "op1", stdin="new password\nnew password\n")
    assert changed.exit_code == 0, changed.output
    s = UserStore(tmp_path / "people.yaml")
    assert s.verify("op1", "8chars!!") is None
    assert s.verify("op1", "new password") is not None


def test_real_command_reads_the_password_from_stdin(tmp_path: Path) -> None:
    config = site(tmp_path)
    exe = [sys.executable, "-m", "streetwatch", "users"]
    done = subprocess.run(
        [*exe, "add", "carol", "--role", "viewer", "--password-stdin", "-c", str(config)],
        input=f"{GOOD}\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{tmp_path / 'var' / 'users.yaml'}: added carol (viewer)"
    assert UserStore(tmp_path / "var" / "users.yaml").verify("carol", GOOD) is not None
    refused = subprocess.run(
        [*exe, "add", "dave", "--role", "viewer", "--password-stdin", "-c", str(config)],
        input="short\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1
    assert refused.stderr.strip() == "Error: the password is 5 characters; the minimum is 12"
