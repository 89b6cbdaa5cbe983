"""Integrity of reports: a manifest of SHA-256 hashes, optional Ed25519 signatures, and verification.

Why hand-written: the manifest is a small JSON file that a reviewer can check without auditkit
(``sha256sum``; ``openssl pkeyutl -verify -rawin`` for the signature), and no library offers a
format-neutral, offline, dependency-light one. The signature itself is ``cryptography``'s Ed25519 (an
optional dependency: ``pip install 'auditkit[sign]'``).

``manifest.json`` (schema ``auditkit.report-manifest/1``)::

    {"schema": "auditkit.report-manifest/1", "created": "<ISO 8601 UTC>",
     "files": {"<relative/posix/path>": "<sha256 hex>", ...},
     "signing_key_sha256": "<sha256 of the raw Ed25519 public key>",   # only in signed manifests
     "manifest_sha256": "<sha256 of the manifest's canonical JSON without this field>"}

It is written in auditkit's canonical JSON (sorted keys, two-space indent, UTF-8; ``json_bytes``), and
:func:`verify` insists on those exact bytes, so any byte changed in the manifest is detected: a change
that keeps the JSON canonical alters a value, which the self-hash ``manifest_sha256`` catches. Without a
signature this detects accidents and naive edits only: whoever can rewrite the files can recompute every
hash. ``manifest.json.sig`` holds the Ed25519 signature of the manifest's bytes, base64 on one line; only a
signature checked with a public key obtained from its owner shows who vouched for the report. A signed
manifest names its key's hash, so deleting the signature file is itself detected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

from auditkit._atomic import atomic_write_bytes, fsync_dir, json_bytes, sha256_file
from auditkit.errors import ConfigError

MANIFEST_SCHEMA = "auditkit.report-manifest/1"
MANIFEST_FILE = "manifest.json"
SIGNATURE_SUFFIX = ".sig"
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_INSTALL_HINT = "install it with `pip install 'auditkit[sign]'` (or `pip install cryptography`)"

SignatureState = Literal["valid", "invalid", "missing", "not checked", "unsigned"]


@dataclass
class VerifyResult:
    """What :func:`verify` found.

    Attributes
    ----------
    manifest
        The manifest checked.
    checked
        Listed files whose hash matches.
    changed, missing
        Listed files whose content differs from the manifest, and those that are gone.
    rejected
        Manifest entries that point outside the report (``../x``, absolute paths): tampering.
    unlisted
        Files in the report folder the manifest does not cover (not a failure, but not vouched for).
    manifest_intact
        Whether the manifest itself is canonical, well-formed and matches its self-hash.
    signature
        ``valid``; ``invalid`` (wrong key, altered manifest or signature); ``missing`` (a key was given or
        the manifest names one, but there is no signature file); ``not checked`` (signature present, no key
        given); ``unsigned``.
    problems
        One sentence per failure; empty when the report verifies.
    notes
        Sentences that qualify a success (an unchecked signature, unlisted files).
    """

    manifest: Path
    checked: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    manifest_intact: bool = True
    signature: SignatureState = "unsigned"
    signing_key_sha256: str | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for ``auditkit verify --json``)."""
        return {
            "ok": self.ok,
            "manifest": str(self.manifest),
            "manifest_intact": self.manifest_intact,
            "signature": self.signature,
            "signing_key_sha256": self.signing_key_sha256,
            "checked": list(self.checked),
            "changed": list(self.changed),
            "missing": list(self.missing),
            "rejected": list(self.rejected),
            "unlisted": list(self.unlisted),
            "problems": list(self.problems),
            "notes": list(self.notes),
        }

    def to_text(self) -> str:
        """A few lines for a terminal: the outcome, then each problem and note."""
        head = "VERIFIED" if self.ok else "FAILED"
        lines = [
            f"{head}: {self.manifest} ({len(self.checked)} file(s) match, signature {self.signature})",
            *(f"  problem: {p}" for p in self.problems),
            *(f"  note: {n}" for n in self.notes),
        ]
        return "\n".join(lines)


def write_manifest(
    folder: str | os.PathLike[str],
    files: Sequence[str | os.PathLike[str]],
    *,
    sign_key: str | os.PathLike[str] | bytes | None = None,
) -> Path:
    """Write ``<folder>/manifest.json`` with the SHA-256 of each listed file, and sign it if asked.

    Parameters
    ----------
    folder
        The report folder.
    files
        Paths relative to ``folder`` (``/``-separated) of the files to vouch for; they must exist inside it.
    sign_key
        An Ed25519 private key (PEM file path or PEM bytes, unencrypted; see :func:`generate_keypair`):
        also write ``manifest.json.sig``. Needs ``cryptography``.

    Returns
    -------
    Path
        The manifest's path. Without ``sign_key`` a signature left by an earlier manifest is removed.

    Raises
    ------
    ConfigError
        A missing folder or file, a path outside the folder, an unusable key, ``cryptography`` missing.
    """
    base = Path(folder)
    if not base.is_dir():
        raise ConfigError(f"report folder {base} does not exist; render the report first.")
    if not files:
        raise ConfigError(f"no files to list in the manifest of {base}; pass the report's files.")
    private = _load_private_key(sign_key) if sign_key is not None else None
    hashes: dict[str, str] = {}
    for entry in files:
        rel = _entry(entry, base)
        if rel in hashes:
            raise ConfigError(f"{rel!r} is listed twice for the manifest of {base}; list each file once.")
        hashes[rel] = sha256_file(base / rel)
    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": hashes,
    }
    if private is not None:
        manifest["signing_key_sha256"] = _key_sha256(private.public_key())
    manifest["manifest_sha256"] = _self_hash(manifest)
    raw = json_bytes(manifest)
    path = base / MANIFEST_FILE
    signature_path = path.with_name(MANIFEST_FILE + SIGNATURE_SUFFIX)
    atomic_write_bytes(path, raw)
    if private is not None:
        atomic_write_bytes(signature_path, base64.b64encode(private.sign(raw)) + b"\n")
    elif signature_path.exists():
        signature_path.unlink()  # a stale signature would read as "present" and fail anyway
        fsync_dir(base)
    return path


def verify(
    path: str | os.PathLike[str], *, public_key: str | os.PathLike[str] | bytes | None = None
) -> VerifyResult:
    """Check a report against its manifest: every file's hash, the manifest itself, and its signature.

    Parameters
    ----------
    path
        The report folder (holding ``manifest.json``) or the manifest file.
    public_key
        The signer's Ed25519 public key (PEM file path or PEM bytes). When given, the manifest must carry
        a valid signature by it; without it a signature is reported as present but not checked.

    Returns
    -------
    VerifyResult
        ``.ok`` and the files that changed, are missing or were rejected; tampering is reported there,
        not raised.

    Raises
    ------
    ConfigError
        No manifest at ``path``, an unreadable or non-Ed25519 key, ``cryptography`` missing with a key.
    """
    given = Path(path)
    manifest_path = given / MANIFEST_FILE if given.is_dir() else given
    if not manifest_path.is_file():
        raise ConfigError(
            f"no manifest at {manifest_path}; pass a report folder holding {MANIFEST_FILE} or the manifest."
        )
    key = _load_public_key(public_key) if public_key is not None else None
    base = manifest_path.parent
    signature_path = manifest_path.with_name(manifest_path.name + SIGNATURE_SUFFIX)
    result = VerifyResult(manifest=manifest_path)
    raw = manifest_path.read_bytes()
    manifest = _parse_manifest(raw, manifest_path, result)
    files = manifest.get("files", {}) if manifest is not None else {}

    for rel, expected in sorted(files.items()):
        try:
            _entry(rel, base, must_exist=False)
        except ConfigError as exc:
            result.rejected.append(rel)
            result.problems.append(f"the manifest entry {rel!r} is rejected as tampering: {exc}")
            continue
        target = base / rel
        if not target.exists():
            result.missing.append(rel)
            result.problems.append(f"{rel} is listed in the manifest but missing")
        elif not target.is_file() or sha256_file(target) != expected:
            result.changed.append(rel)
            result.problems.append(f"{rel} changed since the manifest was written (SHA-256 differs)")
        else:
            result.checked.append(rel)

    claimed = manifest.get("signing_key_sha256") if manifest is not None else None
    result.signing_key_sha256 = claimed
    _check_signature(raw, signature_path, key, claimed, result)

    listed = set(files) | {manifest_path.name, signature_path.name}
    result.unlisted = sorted(
        p.relative_to(base).as_posix()
        for p in base.rglob("*")
        if p.is_file() and p.relative_to(base).as_posix() not in listed
    )
    if result.unlisted:
        shown = ", ".join(result.unlisted[:5]) + (" …" if len(result.unlisted) > 5 else "")
        result.notes.append(f"{len(result.unlisted)} file(s) in the folder are not covered: {shown}")
    return result


def generate_keypair(
    private_path: str | os.PathLike[str], public_path: str | os.PathLike[str]
) -> tuple[Path, Path]:
    """Create an Ed25519 key pair for signing manifests, as PEM files.

    The private key (PKCS#8, unencrypted) is created with mode 0600 and never overwrites a file; keep it
    secret and give the public key (SubjectPublicKeyInfo) to whoever verifies the reports.

    Returns
    -------
    tuple
        ``(private_path, public_path)``.

    Raises
    ------
    ConfigError
        Either file already exists, the paths are the same, or ``cryptography`` is missing.
    """
    private_file, public_file = Path(private_path), Path(public_path)
    if private_file.resolve() == public_file.resolve():
        raise ConfigError(f"the private and public key paths must differ; both are {private_file}.")
    for existing in (private_file, public_file):
        if existing.exists():
            raise ConfigError(
                f"{existing} already exists; auditkit never overwrites a key. Choose new paths or move it."
            )
    ed25519, serialization = _crypto()
    private = ed25519.Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # O_EXCL and 0600 from the first byte: no moment where another user could read the secret
    fd = os.open(private_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(private_pem)
            fh.flush()
            os.fsync(fh.fileno())
        atomic_write_bytes(public_file, public_pem)
    except BaseException:
        private_file.unlink(missing_ok=True)
        raise
    return private_file, public_file


# --------------------------------------------------------------------------- internals


def _crypto() -> tuple[Any, Any]:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise ConfigError(
            f"signing and checking signatures needs the cryptography package; {_INSTALL_HINT}."
        ) from None
    return ed25519, serialization


def _read_key(source: str | os.PathLike[str] | bytes, what: str) -> tuple[bytes, str]:
    if isinstance(source, bytes):
        return source, f"the {what} given as bytes"
    path = Path(source)
    try:
        return path.read_bytes(), f"the {what} file {path}"
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror or exc}.") from None


def _load_private_key(source: str | os.PathLike[str] | bytes) -> Any:
    ed25519, serialization = _crypto()
    data, where = _read_key(source, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(
            f"{where} is encrypted; auditkit signs with unencrypted PEM keys (protect the file itself)."
        ) from None
    except ValueError:
        raise ConfigError(
            f"{where} is not a PEM private key; create one with auditkit.report.integrity.generate_keypair."
        ) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{where} is a {type(key).__name__}; manifests are signed with Ed25519 keys only.")
    return key


def _load_public_key(source: str | os.PathLike[str] | bytes) -> Any:
    ed25519, serialization = _crypto()
    data, where = _read_key(source, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise ConfigError(
            f"{where} is not a PEM public key; pass the signer's public key (not the private one)."
        ) from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"{where} is a {type(key).__name__}; manifests are signed with Ed25519 keys only.")
    return key


def _key_sha256(public_key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def _self_hash(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(
        json_bytes({k: v for k, v in manifest.items() if k != "manifest_sha256"})
    ).hexdigest()


def _entry(entry: Any, base: Path, *, must_exist: bool = True) -> str:
    """Validate a manifest path: relative, ``/``-separated, inside ``base`` even after resolving links."""
    if isinstance(entry, os.PathLike):
        entry = os.fspath(entry)
    if not isinstance(entry, str) or not entry or "\x00" in entry:
        raise ConfigError(f"a manifest path must be a non-empty string; got {entry!r}.")
    pure = PurePosixPath(entry)
    if "\\" in entry or pure.is_absolute() or PureWindowsPath(entry).drive or PureWindowsPath(entry).root:
        raise ConfigError(f"{entry!r} is absolute or uses '\\'; list paths relative to {base} with '/'.")
    if ".." in pure.parts or "." in entry.split("/") or "" in entry.split("/"):
        raise ConfigError(f"{entry!r} is not a plain path inside {base} (no '..', '.' or empty parts).")
    if pure.as_posix() in (MANIFEST_FILE, MANIFEST_FILE + SIGNATURE_SUFFIX):
        raise ConfigError(f"{entry!r} is the manifest or its signature, which cannot list itself.")
    target = base / pure
    try:
        target.resolve().relative_to(base.resolve())
    except ValueError:
        raise ConfigError(f"{entry!r} leads outside {base} through a link; copy the file into it.") from None
    if must_exist and not target.is_file():
        raise ConfigError(f"{target} is not a file; list only files that exist in the report folder.")
    return pure.as_posix()


def _parse_manifest(raw: bytes, path: Path, result: VerifyResult) -> dict[str, Any] | None:
    """The manifest's content if well-formed (else ``None``); damage goes into ``result``."""

    def damaged(why: str) -> None:
        result.manifest_intact = False
        result.problems.append(f"the manifest {path.name} was altered or damaged: {why}")

    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        damaged(f"it is not valid UTF-8 JSON ({exc})")
        return None
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        damaged(f"it is not an auditkit manifest (schema {MANIFEST_SCHEMA})")
        return None
    try:
        canonical = json_bytes(manifest)
    except ValueError:  # NaN or infinity: auditkit never writes those
        canonical = b""
    if canonical != raw:
        damaged("its bytes are not those auditkit wrote (edited by hand or corrupted)")
    elif manifest.get("manifest_sha256") != _self_hash(manifest):
        damaged("its content does not match its own hash (manifest_sha256)")
    claimed = manifest.get("signing_key_sha256")
    if claimed is not None and not (isinstance(claimed, str) and _SHA256_RE.fullmatch(claimed)):
        damaged("'signing_key_sha256' is not a SHA-256 hex digest")
        manifest["signing_key_sha256"] = None
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _SHA256_RE.fullmatch(v) for k, v in files.items()
    ):
        damaged("'files' must map paths to lowercase SHA-256 hex digests")
        return None
    return manifest


def _check_signature(
    raw: bytes, signature_path: Path, key: Any, claimed: str | None, result: VerifyResult
) -> None:
    if not signature_path.exists():
        if key is not None:
            result.signature = "missing"
            result.problems.append(
                f"a public key was given but the manifest is unsigned (no {signature_path.name})"
            )
        elif claimed is not None:
            result.signature = "missing"
            result.problems.append(
                f"the manifest was signed (key {claimed[:16]}…) but {signature_path.name} is missing"
            )
        return
    if key is None:
        result.signature = "not checked"
        result.notes.append("signature present, not checked: pass the signer's public key to check it")
        return
    from cryptography.exceptions import InvalidSignature

    result.signature = "invalid"
    given = _key_sha256(key)
    try:
        text = signature_path.read_bytes().strip()
        signature = base64.b64decode(text, validate=True)
        key.verify(signature, raw)
    except (OSError, binascii.Error, ValueError):
        result.problems.append(
            f"the signature file {signature_path.name} is damaged (not a base64 signature)"
        )
        return
    except InvalidSignature:
        if claimed is not None and claimed != given:
            why = f"it was made with key {claimed[:16]}…, not with the given key {given[:16]}…"
        else:
            why = "the manifest or the signature was altered, or the key is not the signer's"
        result.problems.append(f"the signature does not match: {why}")
        return
    if claimed is not None and claimed != given:  # only reachable if the manifest names another key
        result.problems.append("the manifest names a different signing key than the one that signed it")
        return
    result.signature = "valid"


__all__ = [
    "MANIFEST_FILE",
    "MANIFEST_SCHEMA",
    "SIGNATURE_SUFFIX",
    "VerifyResult",
    "generate_keypair",
    "verify",
    "write_manifest",
]
