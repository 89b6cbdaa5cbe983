"""Sign-off records and report integrity (manifest, verification, Ed25519 signatures).

The report under test is a real audit's folder (``audit.json`` and its sample grids). References are
independent of the code under test: ``hashlib`` for every hash, ``cryptography``'s Ed25519 directly for
signatures, and the raw bytes on disk for what was written.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from auditkit import ConfigError, RunStore, StoreError
from auditkit._atomic import json_bytes
from auditkit.audit import audit
from auditkit.data import Shapes
from auditkit.policy import Policy
from auditkit.report.integrity import (
    MANIFEST_SCHEMA,
    generate_keypair,
    verify,
    write_manifest,
)
from auditkit.report.signoff import add_signoff, check_signoffs, load_signoffs

sys.path.insert(0, str(Path(__file__).parent))
from _standins import ShapesStandIn  # noqa: E402 - next to this file, not in a package

BIAS_POLICY = {"policy": 1, "name": "bias only", "rules": {"bias.tvd": {"warn": 0.05, "fail": 0.10}}}


@pytest.fixture(scope="module")
def audit_dir(trained_judge, tmp_path_factory) -> Path:
    """A finished audit's folder; tests copy it before changing anything."""
    result = audit(
        ShapesStandIn({"shape": {"circle": 0.5, "square": 0.3, "triangle": 0.2}}),
        Shapes(300, seed=3),
        trained_judge,
        Policy.load(BIAS_POLICY),
        n=500,
        n_boot=50,
        stages=("bias",),
        store=RunStore(tmp_path_factory.mktemp("home")),
        progress=False,
        reference_shares="uniform",
    )
    return result.path


@pytest.fixture
def report(audit_dir, tmp_path) -> tuple[Path, list[str]]:
    """A copy of the audit folder as a report, and the files to list (audit.json and its artifacts)."""
    folder = tmp_path / "report"
    shutil.copytree(audit_dir, folder)
    shutil.rmtree(folder / "stages")  # stage caches are not part of a report
    record = json.loads((folder / "audit.json").read_text(encoding="utf-8"))
    files = ["audit.json"] + [a["path"] for a in record["manifest"]["artifacts"] if a["path"] != "audit.json"]
    assert len(files) >= 3 and all((folder / f).is_file() for f in files)
    return folder, files


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _flip(path: Path, position: int, mask: int = 0x01) -> bytes:
    """Flip bits of one byte in place; returns the original content."""
    original = path.read_bytes()
    changed = bytearray(original)
    changed[position] ^= mask
    path.write_bytes(bytes(changed))
    return original


# --------------------------------------------------------------------------- sign-off


def test_signoffs_append_in_order_with_the_audit_hash(audit_dir, tmp_path) -> None:
    folder = tmp_path / "audit"
    shutil.copytree(audit_dir, folder)
    assert load_signoffs(folder) == []
    signed_hash = _sha(folder / "audit.json")
    script = "<script>alert('x')</script> & \"quotes\" — ünïcode\nsecond line"
    first = add_signoff(
        folder,
        reviewer=" Ada Lovelace ",
        role="model risk",
        decision="approve",
        comment=script,
        now=datetime(2026, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))),
    )
    second = add_signoff(
        folder, reviewer="B. Reviewer", role="legal", decision="conditional", comment="ok if X"
    )
    third = add_signoff(folder, reviewer="C", role="governance", decision="reject")
    records = load_signoffs(folder)
    assert records == [first, second, third]
    assert [r["decision"] for r in records] == ["approve", "conditional", "reject"]
    assert first["reviewer"] == "Ada Lovelace" and first["date"] == "2026-03-01T12:30:00+00:00"  # in UTC
    assert set(first) == {"reviewer", "role", "decision", "comment", "date", "audit_sha256"}
    assert all(r["audit_sha256"] == signed_hash for r in records)
    # the comment is stored verbatim: escaping is the renderer's job
    assert first["comment"] == script
    assert json.loads((folder / "signoffs.json").read_bytes())[0]["comment"] == script
    assert datetime.fromisoformat(third["date"]).utcoffset() == timedelta(0)
    assert not any(r["audit_changed"] for r in check_signoffs(folder))

    # an edit of audit.json after sign-off shows: the recorded hash no longer matches
    before = (folder / "signoffs.json").read_bytes()
    text = (folder / "audit.json").read_text(encoding="utf-8")
    (folder / "audit.json").write_text(text.replace('"verdict": "fail"', '"verdict": "pass"', 1), "utf-8")
    assert _sha(folder / "audit.json") != signed_hash
    assert [r["audit_changed"] for r in check_signoffs(folder)] == [True, True, True]
    fourth = add_signoff(folder, reviewer="D", role="audit", decision="reject", comment="edited after review")
    assert fourth["audit_sha256"] == _sha(folder / "audit.json")
    assert [r["audit_changed"] for r in check_signoffs(folder)] == [True, True, True, False]
    # earlier records are kept unchanged, byte for byte
    after = json.loads((folder / "signoffs.json").read_bytes())
    assert after[:3] == json.loads(before) and after[3] == fourth


def test_signoff_inputs_and_damaged_files_are_clear_errors(audit_dir, tmp_path) -> None:
    folder = tmp_path / "audit"
    shutil.copytree(audit_dir, folder)
    for kwargs, match in (
        ({"reviewer": "  ", "role": "legal", "decision": "approve"}, "needs a reviewer"),
        ({"reviewer": "A", "role": "", "decision": "approve"}, "needs a role"),
        ({"reviewer": "A", "role": "legal", "decision": "approved"}, "approve, reject, conditional"),
        ({"reviewer": "A", "role": "legal", "decision": "approve", "comment": None}, "must be text"),
        ({"reviewer": "A", "role": "legal", "decision": "approve", "now": datetime(2026, 1, 1)}, "aware"),
    ):
        with pytest.raises(ConfigError, match=match):
            add_signoff(folder, **kwargs)
    assert not (folder / "signoffs.json").exists()  # nothing written by a refused sign-off
    with pytest.raises(ConfigError, match="holds no audit.json"):
        add_signoff(tmp_path, reviewer="A", role="legal", decision="approve")

    add_signoff(folder, reviewer="A", role="legal", decision="approve")
    good = (folder / "signoffs.json").read_bytes()
    for damage in (
        good[:-5],
        b'{"reviewer": "A"}',
        b'[{"reviewer": "A"}]',
        good.replace(b"approve", b"maybe"),
    ):
        (folder / "signoffs.json").write_bytes(damage)
        with pytest.raises(StoreError, match=r"signoffs\.json.*restore it"):
            load_signoffs(folder)
        with pytest.raises(StoreError, match="signoffs.json"):
            add_signoff(folder, reviewer="B", role="legal", decision="approve")
        assert (folder / "signoffs.json").read_bytes() == damage  # a damaged file is never overwritten


def test_concurrent_signoffs_are_all_kept(audit_dir, tmp_path) -> None:
    folder = tmp_path / "audit"
    shutil.copytree(audit_dir, folder)

    def sign(i: int) -> None:
        add_signoff(folder, reviewer=f"reviewer {i}", role="panel", decision="approve")

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(sign, range(24)))
    assert sorted(r["reviewer"] for r in load_signoffs(folder)) == sorted(f"reviewer {i}" for i in range(24))


# --------------------------------------------------------------------------- manifest and verify


def test_manifest_hashes_every_listed_file_and_an_untouched_report_verifies(report) -> None:
    folder, files = report
    add_signoff(folder, reviewer="A", role="legal", decision="approve")
    files = [*files, "signoffs.json"]
    path = write_manifest(folder, files)
    assert path == folder / "manifest.json"
    raw = path.read_bytes()
    manifest = json.loads(raw)
    assert manifest["schema"] == MANIFEST_SCHEMA
    assert manifest["files"] == {f: _sha(folder / f) for f in files}
    assert datetime.fromisoformat(manifest["created"]).utcoffset() == timedelta(0)
    # the documented self-hash: SHA-256 of the canonical JSON without the field itself
    rest = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    assert manifest["manifest_sha256"] == hashlib.sha256(json_bytes(rest)).hexdigest()
    assert "signing_key_sha256" not in manifest and not (folder / "manifest.json.sig").exists()

    for target in (folder, path, str(path)):
        result = verify(target)
        assert result.ok and result.manifest_intact, result.to_text()
        assert sorted(result.checked) == sorted(files) and result.signature == "unsigned"
        assert not (result.changed or result.missing or result.rejected or result.problems)
    # the store's config and the sign-off lock were not listed: reported, not vouched for
    assert result.unlisted == [".signoffs.lock", "config.json"] and "not covered" in result.notes[0]
    assert "VERIFIED" in result.to_text()
    assert json.loads(json.dumps(result.to_dict()))["ok"] is True

    # a later sign-off changes a vouched-for file: verification names it
    add_signoff(folder, reviewer="B", role="legal", decision="reject")
    result = verify(folder)
    assert not result.ok and result.changed == ["signoffs.json"]
    assert "signoffs.json changed" in result.to_text()


def test_any_changed_byte_or_deleted_file_fails_and_is_named(report) -> None:
    folder, files = report
    manifest = write_manifest(folder, files)
    assert verify(folder).ok
    for rel in files:
        path = folder / rel
        size = path.stat().st_size
        for position in sorted({0, 1, size // 3, size // 2, size - 2, size - 1}):
            original = _flip(path, position)
            result = verify(folder)
            assert not result.ok and result.changed == [rel] and result.manifest_intact, (rel, position)
            assert any(rel in p for p in result.problems)
            path.write_bytes(original)
    assert verify(folder).ok

    # every single byte of the manifest, two ways: a low bit (stays ASCII) and the high bit (breaks UTF-8)
    raw = manifest.read_bytes()
    for position in range(len(raw)):
        for mask in (0x01, 0x80) if position % 7 == 0 else (0x01,):
            _flip(manifest, position, mask)
            result = verify(folder)
            assert not result.ok and not result.manifest_intact, (position, mask, result.to_text())
            assert any("manifest.json" in p for p in result.problems)
            manifest.write_bytes(raw)
    # whitespace that leaves the JSON's meaning alone is still a change
    manifest.write_bytes(raw.replace(b"\n", b"\r\n", 1))
    assert not verify(folder).manifest_intact
    manifest.write_bytes(raw)

    victim = files[-1]
    (folder / victim).unlink()
    result = verify(folder)
    assert not result.ok and result.missing == [victim] and f"{victim} is listed" in result.to_text()
    manifest.unlink()
    with pytest.raises(ConfigError, match="no manifest"):
        verify(folder)


def test_ed25519_signature_round_trip_and_failures(report, tmp_path) -> None:
    from cryptography.hazmat.primitives import serialization

    folder, files = report
    keys = tmp_path / "keys"
    keys.mkdir()
    private, public = generate_keypair(keys / "signer.pem", keys / "signer.pub")
    if os.name == "posix":
        assert private.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match="never overwrites"):
        generate_keypair(keys / "signer.pem", keys / "other.pub")
    assert not (keys / "other.pub").exists()
    _, other_public = generate_keypair(keys / "other.pem", keys / "other.pub")

    manifest = write_manifest(folder, files, sign_key=private)
    signature_file = folder / "manifest.json.sig"
    # independent check: cryptography's own Ed25519 verify over the manifest's exact bytes
    public_key = serialization.load_pem_public_key(public.read_bytes())
    public_key.verify(base64.b64decode(signature_file.read_bytes()), manifest.read_bytes())
    raw_key = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert json.loads(manifest.read_bytes())["signing_key_sha256"] == hashlib.sha256(raw_key).hexdigest()

    good = verify(folder, public_key=public)
    assert good.ok and good.signature == "valid", good.to_text()
    assert verify(folder, public_key=public.read_bytes()).signature == "valid"
    unchecked = verify(folder)
    assert unchecked.ok and unchecked.signature == "not checked"
    assert any("signature present, not checked" in n for n in unchecked.notes)

    wrong = verify(folder, public_key=other_public)
    assert not wrong.ok and wrong.signature == "invalid" and "not with the given key" in wrong.to_text()

    signature = signature_file.read_bytes()
    for position in (0, len(signature) // 2, len(signature) - 3):  # one base64 character each
        _flip(signature_file, position)
        result = verify(folder, public_key=public)
        assert not result.ok and result.signature == "invalid", position
        signature_file.write_bytes(signature)
    signature_file.write_bytes(b"not base64 at all!\n")
    assert "damaged" in verify(folder, public_key=public).to_text()
    signature_file.write_bytes(signature)

    # a changed file or manifest byte fails with the key as well
    original = _flip(folder / files[0], 10)
    assert verify(folder, public_key=public).changed == [files[0]]
    (folder / files[0]).write_bytes(original)
    raw = manifest.read_bytes()
    _flip(manifest, len(raw) // 2)
    assert verify(folder, public_key=public).signature == "invalid"
    manifest.write_bytes(raw)
    assert verify(folder, public_key=public).ok

    # removing the signature of a signed manifest is detected, key or not
    signature_file.unlink()
    for key in (None, public):
        result = verify(folder, public_key=key)
        assert not result.ok and result.signature == "missing"

    # an unsigned manifest checked with a key fails; re-writing unsigned drops a stale signature
    write_manifest(folder, files, sign_key=private)
    write_manifest(folder, files)
    assert not signature_file.exists()
    unsigned = verify(folder, public_key=public)
    assert not unsigned.ok and "unsigned" in unsigned.to_text()
    assert verify(folder).ok

    with pytest.raises(ConfigError, match="not a PEM private key"):
        write_manifest(folder, files, sign_key=public)
    with pytest.raises(ConfigError, match="not a PEM public key"):
        verify(folder, public_key=private.read_bytes().replace(b"PRIVATE", b"PUBLIC"))
    with pytest.raises(ConfigError, match="cannot read the public key file"):
        verify(folder, public_key=keys / "absent.pub")


def test_paths_outside_the_report_are_rejected(report, tmp_path) -> None:
    folder, files = report
    outside = tmp_path / "outside.txt"
    outside.write_text("a file the manifest must not vouch for\n")
    for bad in ("../outside.txt", str(outside), "samples/../../outside.txt", "./audit.json", "a//b", "..\\x"):
        with pytest.raises(ConfigError):
            write_manifest(folder, [files[0], bad])
    with pytest.raises(ConfigError, match="listed twice"):
        write_manifest(folder, [files[0], files[0]])
    with pytest.raises(ConfigError, match="not a file"):
        write_manifest(folder, ["no-such-file.html"])
    assert not (folder / "manifest.json").exists()

    def forged(entries: dict[str, str]) -> None:
        """A manifest that is canonical and self-consistent, so only its entries can fail it."""
        body = {"schema": MANIFEST_SCHEMA, "created": "2026-01-01T00:00:00+00:00", "files": entries}
        body["manifest_sha256"] = hashlib.sha256(json_bytes(body)).hexdigest()
        (folder / "manifest.json").write_bytes(json_bytes(body))

    honest = {f: _sha(folder / f) for f in files}
    forged(honest)
    assert verify(folder).ok  # the forging recipe itself is sound
    escapes = ["../outside.txt", str(outside), "samples/../../outside.txt", "manifest.json"]
    if sys.platform != "win32":
        (folder / "link.txt").symlink_to(outside)
        escapes.append("link.txt")
    for bad in escapes:
        forged({**honest, bad: _sha(outside)})
        result = verify(folder)
        assert not result.ok and result.rejected == [bad], (bad, result.to_text())
        assert "rejected as tampering" in result.to_text()
        assert sorted(result.checked) == sorted(files)


def test_missing_cryptography_is_a_clear_error(report, tmp_path, monkeypatch) -> None:
    folder, files = report
    for name in [m for m in sys.modules if m == "cryptography" or m.startswith("cryptography.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(ConfigError, match=r"pip install 'auditkit\[sign\]'"):
        generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    (tmp_path / "k.pem").write_text("unused")
    with pytest.raises(ConfigError, match=r"auditkit\[sign\]"):
        write_manifest(folder, files, sign_key=tmp_path / "k.pem")
    assert not (folder / "manifest.json").exists()
    write_manifest(folder, files)  # hashing alone needs no cryptography
    assert verify(folder).ok
    with pytest.raises(ConfigError, match=r"auditkit\[sign\]"):
        verify(folder, public_key=tmp_path / "k.pem")
