"""``meterctl policy sign``: format 2 bundles, co-signing, key rotation bundles, and refused arguments."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from meterd.cli.sign_cmd import expiry
from meterd.errors import PolicyError
from meterd.policy.bundle import load_verify_key
from meterd.policy.signed import SignedBundle, decode_any, key_id

ROOT = Path(__file__).resolve().parents[2]
POLICY = '[users.admin]\nroles = ["rbacmnt"]\n'


def meterctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meterd.cli.meterctl", "policy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def keygen(tmp_path: Path, *names: str) -> None:
    for name in names:
        assert meterctl("keygen", "--out", str(tmp_path / name)).returncode == 0


def kid(path: Path) -> str:
    return str(key_id(load_verify_key(path.read_bytes(), str(path))))


def test_sign_cosign_and_rotation_bundle(tmp_path: Path) -> None:
    keygen(tmp_path, "a", "b", "n1", "n2")
    policy = tmp_path / "p.toml"
    policy.write_text(POLICY)
    out = tmp_path / "b.json"
    args = ["sign", str(policy), "--key", str(tmp_path / "a.pem"), "--out", str(out), "--version", "9"]
    args += ["--expires", "2031-05-01T12:00:00Z", "--target", "meter:m1", "--target", "label:sub-7"]
    args += ["--install-key", str(tmp_path / "n1.pub.pem"), "--install-key", str(tmp_path / "n2.pub.pem")]
    made = meterctl(*args, "--install-threshold", "2")
    assert made.returncode == 0, made.stderr
    cosigned = meterctl("sign", str(out), "--key", str(tmp_path / "b.pem"), "--out", str(out))
    assert cosigned.returncode == 0, cosigned.stderr
    bundle = decode_any(out.read_bytes())
    assert isinstance(bundle, SignedBundle)
    signed = json.loads(out.read_text())["signed"]
    assert signed["version"] == 9
    assert signed["expires"] == "2031-05-01T12:00:00Z"
    assert signed["targets"] == {"meters": ["m1"], "labels": ["sub-7"]}
    assert signed["keys"]["threshold"] == 2
    assert [k for k, _ in bundle.signatures] == [kid(tmp_path / "a.pub.pem"), kid(tmp_path / "b.pub.pem")]
    assert bundle.signed.keys is not None
    assert set(bundle.signed.keys.keys) == {kid(tmp_path / "n1.pub.pem"), kid(tmp_path / "n2.pub.pem")}
    # Co-signing must not change what the bundle says.
    changed = meterctl(
        "sign", str(out), "--key", str(tmp_path / "b.pem"), "--out", str(out), "--version", "10"
    )
    assert changed.returncode == 2
    assert "co-signing changes nothing" in changed.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", "substation-7", "--expires", "1d"], '"substation-7" must be meter:ID or label:NAME'),
        (["--target", "meter:m1", "--expires", "next week"], '"next week" is neither a time nor a duration'),
        (["--expires", "30d"], "needs --expires and at least one --target"),
        (["--target", "meter:m1", "--expires", "2031-01-01T00:00:00"], "must name its zone"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, extra: list[str], message: str) -> None:
    keygen(tmp_path, "a")
    policy = tmp_path / "p.toml"
    policy.write_text(POLICY)
    out = tmp_path / "o.json"
    done = meterctl(
        "sign", str(policy), "--key", str(tmp_path / "a.pem"), "--out", str(out), "--version", "1", *extra
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert not out.exists()


def test_expiry_durations() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert expiry("30d", now) == now + timedelta(days=30)
    assert expiry("12h", now) == now + timedelta(hours=12)
    assert expiry("90m", now) == now + timedelta(minutes=90)
    with pytest.raises(PolicyError):
        expiry("-5d", now)
