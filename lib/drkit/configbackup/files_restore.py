"""`drkit files restore`: Storage files back from a config backup's index, every byte checked, into a folder or S3.

The index (`<source>/index.json` in the encrypted, signed config archive) names every object with
its size and SHA-256 and the blob that holds it. Each blob is decrypted into a private temporary
file, its size and SHA-256 compared with the index, and only then put at its place: a folder
(`<dir>/<bucket>/<key>`, written under a temporary name and renamed) or an S3 endpoint (the new
Supabase project's, bucket for bucket). An object already there with the same content is left
alone; one with other content is a conflict, left alone unless `force`. A file that fails its
check is reported by name and never written; the others go on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from drkit.configbackup import catalog, files
from drkit.configbackup.dns_restore import read_member
from drkit.core.errors import ConfigError, CryptoError, IntegrityError, StoreError
from drkit.crypto import encryption
from drkit.storage import audit
from drkit.storage.store import Store


class Target(Protocol):
    def describe(self) -> str: ...
    def same(self, obj: dict[str, Any]) -> bool | None: ...  # None: absent; True: same content; False: differs
    def put(self, obj: dict[str, Any], path: Path) -> None: ...


def _safe_parts(bucket: str, key: str) -> list[str]:
    parts = [bucket, *key.split("/")]
    if any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise IntegrityError(f"{bucket}/{key}: not a safe path for a folder")
    return parts


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class DirTarget:
    root: Path

    def describe(self) -> str:
        return str(self.root)

    def path(self, obj: dict[str, Any]) -> Path:
        return self.root.joinpath(*_safe_parts(obj["bucket"], obj["key"]))

    def same(self, obj: dict[str, Any]) -> bool | None:
        p = self.path(obj)
        if not p.exists():
            return None
        return bool(p.stat().st_size == obj["size"] and _sha256(p) == obj["sha256"])

    def put(self, obj: dict[str, Any], path: Path) -> None:
        """Into place by a rename within the destination's folder (the checked file is in the system temp
        folder, which may be another file system): a file at its name is always whole."""
        dest = self.path(obj)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.drkit-partial")
        try:
            shutil.move(path, partial)
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)


@dataclass
class S3Target:
    client: Any
    endpoint: str

    def describe(self) -> str:
        return self.endpoint

    def same(self, obj: dict[str, Any]) -> bool | None:
        try:
            head = self.client.head_object(Bucket=obj["bucket"], Key=obj["key"])
        except Exception as exc:  # a 404 is "absent"; anything else is the target's failure
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        etag = str(head.get("ETag", "")).strip('"')
        return int(head.get("ContentLength", -1)) == obj["size"] and etag in {obj.get("etag"), obj.get("md5")} - {""}

    def put(self, obj: dict[str, Any], path: Path) -> None:
        with open(path, "rb") as f:
            self.client.put_object(Bucket=obj["bucket"], Key=obj["key"], Body=f, ContentLength=obj["size"])
        path.unlink()


@dataclass
class Outcome:
    restored: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "bucket/key: why"
    bytes: int = 0


def find_index(store: Store, ref: str, source: str, identities: Sequence[Any]
               ) -> tuple[catalog.ConfigEntry, dict[str, Any]]:
    """The index of `source` in config backup `ref` (`latest`: the newest in which that source succeeded)."""
    import datetime as dt

    entries = [catalog.find(store, ref)] if ref != "latest" else catalog.trusted_view(store, dt.datetime.now(dt.UTC)).trusted
    for entry in entries:
        manifest = catalog.read_manifest(store, entry)
        unit = next((s for s in manifest.get("sources", []) if s["name"] == source), None)
        if unit is None or unit.get("status") != "ok" or unit.get("type") != "storage":
            if ref != "latest":
                raise ConfigError(f"config backup {entry.id} holds no complete copy of storage source {source!r}")
            continue
        data = read_member(store, entry, manifest, f"{source}/{files.INDEX}", identities)
        index = json.loads(data)
        if not isinstance(index, dict) or not isinstance(index.get("objects"), list):
            raise IntegrityError(f"{source}/{files.INDEX} in config backup {entry.id} is not a files index")
        return entry, index
    raise ConfigError(f"no config backup holds a complete copy of storage source {source!r}: is it in "
                      "DRKIT_CONFIG_SOURCES, and did config-backup run since? (`drkit config list`)")


def select(index: dict[str, Any], buckets: Sequence[str], prefix: str) -> list[dict[str, Any]]:
    return [o for o in index["objects"] if (not buckets or o["bucket"] in buckets) and str(o["key"]).startswith(prefix)]


def restore(store: Store, source: str, entry_id: str, objects: list[dict[str, Any]], identities: Sequence[Any],
            target: Target, *, force: bool = False, progress: Callable[[int], None] | None = None) -> Outcome:
    out = Outcome()
    scratch = Path(tempfile.mkdtemp(prefix="drkit-files-"))
    os.chmod(scratch, 0o700)
    try:
        for obj in objects:
            name = f"{obj['bucket']}/{obj['key']}"
            try:
                same = target.same(obj)
                if same:
                    out.already.append(name)
                elif same is False and not force:
                    out.conflicts.append(name)
                else:
                    path = _fetch(store, source, obj, identities, scratch)
                    target.put(obj, path)
                    out.restored.append(name)
                    out.bytes += int(obj["size"])
            except (IntegrityError, CryptoError, StoreError) as exc:
                out.failed.append(f"{name}: {exc}")
            except Exception as exc:  # noqa: BLE001 - one file's failure (target refused it) must not stop the rest
                out.failed.append(f"{name}: {type(exc).__name__}: {exc}")
            if progress:
                progress(int(obj["size"]))
    finally:
        for p in scratch.iterdir():
            p.unlink()
        scratch.rmdir()
    audit.record(store, "cli", "files.restored", {"source": source, "backup_id": entry_id, "target": target.describe(),
                                                   "restored": len(out.restored), "already": len(out.already),
                                                   "conflicts": len(out.conflicts), "failed": len(out.failed)})
    return out


def _fetch(store: Store, source: str, obj: dict[str, Any], identities: Sequence[Any], scratch: Path) -> Path:
    """The object's bytes in a private file, checked against the index; nothing is left when the check fails."""
    fd, name = tempfile.mkstemp(dir=scratch)
    path = Path(name)
    h = hashlib.sha256()

    class Sink:
        size = 0

        def write(self, b: Any) -> int:
            data = bytes(b)
            os.write(fd, data)
            h.update(data)
            Sink.size += len(data)
            return len(data)

    raw = store.open_read(files.blob_key(source, obj["blob"]))
    try:
        encryption.decrypt_stream(raw, Sink(), identities)
    except BaseException:
        os.close(fd)
        path.unlink()
        raise
    finally:
        raw.close()
    os.close(fd)
    if Sink.size != int(obj["size"]) or h.hexdigest() != obj["sha256"]:
        path.unlink()
        raise IntegrityError(f"its copy does not match the index ({Sink.size} bytes, sha256 {h.hexdigest()[:12]}…; "
                             f"expected {obj['size']} bytes, {str(obj['sha256'])[:12]}…): not written")
    return path
