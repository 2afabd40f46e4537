"""The model registry: local model files (and LoRA adapters) as named versions.

Under ``models_dir/registry``: ``index.json`` (every entry) and each version's file in
``NAME/VERSION/``. A version is immutable: its file, SHA-256 and size are fixed when it is
added; only its measured figures are filled in later. The index is rewritten whole (a
temporary file, then an atomic rename) under a file lock, so two commands at once never lose
each other's entries, and a crash leaves the old index or the new one, never half of one.

A reference is ``NAME@VERSION``, or ``NAME`` for its newest version; a model config says
``path: registry:NAME@VERSION`` (``resolve`` turns it into the file).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock

from seekport.errors import InvalidRequestError

PREFIX = "registry:"
Kind = Literal["model", "adapter"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
_CHUNK = 1 << 20


class RegistryError(InvalidRequestError):
    """A reference that names nothing, a bad name, a file that does not match its hash (a
    400 over the admin API, one line from the CLI)."""


@dataclass
class ModelVersion:
    name: str
    version: str
    kind: Kind
    file: str  # relative to the registry root
    sha256: str
    size: int
    source: str  # a URL, a path, "bundled", or how it was derived ("quantize q8_0")
    created_at: str
    parent: str | None = None  # NAME@VERSION it was derived from
    quantization: str | None = None  # the file type GGUF declares (e.g. Q8_0)
    figures: dict[str, Any] = field(default_factory=dict)  # measured: size, speed, perplexity

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise RegistryError(
            f"invalid model name {name!r}: letters, digits, '.', '_' and '-', at most 64, "
            "starting with a letter or digit"
        )
    return name


def split_ref(ref: str) -> tuple[str, str | None]:
    """``NAME@VERSION`` → (NAME, VERSION); ``NAME`` → (NAME, None)."""
    name, sep, version = ref.partition("@")
    check_name(name)
    if sep and not _VERSION.match(version):
        raise RegistryError(
            f"invalid version {version!r} in {ref!r}: letters, digits, '.', '_' and '-', at most 32"
        )
    return name, (version if sep else None)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class Registry:
    def __init__(self, models_dir: Path) -> None:
        self.root = models_dir / "registry"
        self._index = self.root / "index.json"
        self._lock = FileLock(str(self.root / ".lock"), timeout=60)

    # ---- reading

    def entries(self, name: str | None = None) -> list[ModelVersion]:
        """Every version (of ``name``), oldest first."""
        found = self._read()
        return [e for e in found if name is None or e.name == name]

    def get(self, ref: str) -> ModelVersion:
        """The version ``ref`` names (``NAME``: its newest)."""
        name, version = split_ref(ref)
        versions = self.entries(name)
        if not versions:
            known = sorted({e.name for e in self.entries()})
            hint = f" (registered: {', '.join(known)})" if known else " (the registry is empty)"
            raise RegistryError(f"no model '{name}' in the registry{hint}")
        if version is None:
            return versions[-1]
        for e in versions:
            if e.version == version:
                return e
        raise RegistryError(
            f"no version '{version}' of '{name}' "
            f"(versions: {', '.join(e.version for e in versions)})"
        )

    def path_of(self, entry: ModelVersion) -> Path:
        return self.root / entry.file

    def resolve(self, ref: str) -> Path:
        """The file of ``ref``, checked to exist with its registered size."""
        entry = self.get(ref)
        path = self.path_of(entry)
        if not path.is_file() or path.stat().st_size != entry.size:
            raise RegistryError(
                f"the file of {entry.ref} is missing or changed ({path}); "
                f"`seekport models rm {entry.ref}` and add it again"
            )
        return path

    def verify(self, ref: str) -> ModelVersion:
        """Re-hash the file of ``ref``: a RegistryError if it no longer matches."""
        entry = self.get(ref)
        actual = sha256_of(self.resolve(ref))
        if actual != entry.sha256:
            raise RegistryError(
                f"the file of {entry.ref} does not match its SHA-256 "
                f"(registered {entry.sha256}, now {actual})"
            )
        return entry

    # ---- changing

    def add(
        self,
        name: str,
        src: Path,
        *,
        source: str,
        version: str | None = None,
        kind: Kind = "model",
        parent: str | None = None,
        quantization: str | None = None,
        sha256: str | None = None,
        move: bool = False,
        figures: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Register ``src`` as ``name@version`` (the next number when not given): copied (or
        moved, for a file made for the registry) into its own directory. ``sha256``: the
        expected hash (a RegistryError if the file differs), else computed."""
        check_name(name)
        if version is not None:
            split_ref(f"{name}@{version}")
        if not src.is_file():
            raise RegistryError(f"no file at {src}")
        actual = sha256_of(src)
        if sha256 is not None and actual != sha256.lower():
            raise RegistryError(f"SHA-256 mismatch for {src}: expected {sha256}, got {actual}")
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock:
            entries = self._read()
            taken = {e.version for e in entries if e.name == name}
            if version is None:
                version = str(1 + max((int(v) for v in taken if v.isdigit()), default=0))
            elif version in taken:
                raise RegistryError(f"{name}@{version} exists already; choose another version")
            rel = Path(name) / version / src.name
            dest = self.root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if move:
                os.replace(src, dest)
            else:
                _copy_atomically(src, dest)
            entry = ModelVersion(
                name=name,
                version=version,
                kind=kind,
                file=str(rel),
                sha256=actual,
                size=dest.stat().st_size,
                source=source,
                created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                parent=parent,
                quantization=quantization,
                figures=figures or {},
            )
            self._write([*entries, entry])
        return entry

    def set_figures(self, ref: str, figures: dict[str, Any]) -> ModelVersion:
        with self._lock:
            entries = self._read()
            target = self.get(ref)
            for e in entries:
                if e.ref == target.ref:
                    e.figures = figures
                    target = e
            self._write(entries)
        return target

    def remove(self, ref: str) -> ModelVersion:
        """Delete a version: its entry, then its file. ``NAME`` alone must name one version:
        removing the newest by accident is refused."""
        name, version = split_ref(ref)
        with self._lock:
            entries = self._read()
            if version is None and sum(e.name == name for e in entries) > 1:
                raise RegistryError(f"'{name}' has several versions: name one ({name}@VERSION)")
            target = self.get(ref)
            self._write([e for e in entries if e.ref != target.ref])
            folder = self.path_of(target).parent
            shutil.rmtree(folder, ignore_errors=True)
            if folder.parent.is_dir() and not any(folder.parent.iterdir()):
                folder.parent.rmdir()
        return target

    def downloads(self) -> Path:
        """Where partial downloads wait to be resumed."""
        path = self.root / ".downloads"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ---- the index

    def _read(self) -> list[ModelVersion]:
        try:
            raw = json.loads(self._index.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise RegistryError(f"the registry index {self._index} is unreadable: {exc}") from exc
        return [ModelVersion(**e) for e in raw.get("models", [])]

    def _write(self, entries: list[ModelVersion]) -> None:
        data = {"format": 1, "models": [asdict(e) for e in entries]}
        with _temporary(self.root, ".index-") as tmp:
            tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, self._index)


def _copy_atomically(src: Path, dest: Path) -> None:
    with _temporary(dest.parent, ".copy-") as tmp:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)


@contextlib.contextmanager
def _temporary(folder: Path, prefix: str) -> Iterator[Path]:
    """A temporary file's path in ``folder``, removed on the way out unless renamed."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=prefix)
    os.close(fd)
    path = Path(name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
