"""``seekport models pull``: a model file from a URL or an HF-style mirror into the registry.

* Resumable: the bytes go to ``registry/.downloads/<url hash>-<file>.part``; a connection that
  drops is retried with ``Range: bytes=<have>-`` (with backoff, a bounded number of times),
  and a later ``pull`` of the same URL carries on from there. A server that ignores the range
  (200) is read from the start again.
* Verified: the expected SHA-256 comes from the user (``--sha256``), a ``sha256sum``-style
  manifest (``--manifest``, a URL or a file), or ``<url>.sha256`` next to the file; without
  one the pull is refused unless the user says ``--no-verify``. The hash is computed as the
  bytes arrive (the part already on disk hashed first when resuming); a mismatch deletes the
  part.
* Atomic: only a complete, verified file is moved (one rename) into the registry.
* Bounded: the size the server declares must fit in the free space before a byte is written;
  a disk that fills anyway is a clear error and the part is kept to resume.
"""

from __future__ import annotations

import errno
import hashlib
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from seekport.store.registry import ModelVersion, Registry, RegistryError, check_name

Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_HF = re.compile(r"^hf:(?P<repo>[\w.-]+/[\w.-]+)/(?P<file>[^@]+?)(?:@(?P<rev>[\w.-]+))?$")
DEFAULT_MIRROR = "https://huggingface.co"
ATTEMPTS = 8


class PullError(RegistryError):
    """A download that failed: the message says what to do next."""


@dataclass(frozen=True)
class Source:
    url: str
    filename: str

    @property
    def shown(self) -> str:
        """The URL without credentials (what the registry and the logs keep)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def source_of(spec: str, mirror: str | None = None) -> Source:
    """``https://…/file.gguf``, or ``hf:OWNER/REPO/FILE[@REVISION]`` through an HF-style
    mirror (``{mirror}/{repo}/resolve/{revision}/{file}``)."""
    m = _HF.match(spec)
    if m is not None:
        base = (mirror or DEFAULT_MIRROR).rstrip("/")
        rev = m["rev"] or "main"
        return Source(f"{base}/{m['repo']}/resolve/{rev}/{m['file']}", Path(m["file"]).name)
    parts = urlsplit(spec)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PullError(
            f"cannot pull {spec!r}: give an http(s) URL or hf:OWNER/REPO/FILE (with --mirror)"
        )
    name = Path(parts.path).name
    if not name:
        raise PullError(f"{spec!r} names no file")
    return Source(spec, name)


def _hex(value: str, where: str) -> str:
    if not _HEX64.match(value):
        raise PullError(f"{where}: {value!r} is not a SHA-256 (64 hex digits)")
    return value.lower()


def _manifest_entry(text: str, filename: str, where: str) -> str:
    """The hash of ``filename`` in a ``sha256sum`` listing (``HEX  NAME`` or ``HEX *NAME``)."""
    for line in text.splitlines():
        fields = line.strip().split(maxsplit=1)
        if len(fields) == 2 and Path(fields[1].lstrip("*")).name == filename:
            return _hex(fields[0], where)
    raise PullError(f"the manifest {where} lists no SHA-256 for {filename}")


def expected_sha256(
    client: httpx.Client, source: Source, sha256: str | None, manifest: str | None
) -> str | None:
    if sha256 is not None:
        return _hex(sha256, "--sha256")
    if manifest is not None:
        if manifest.startswith(("http://", "https://")):
            r = client.get(manifest)
            if r.status_code != 200:
                raise PullError(f"the manifest {manifest} answered HTTP {r.status_code}")
            text = r.text
        else:
            try:
                text = Path(manifest).expanduser().read_text(encoding="utf-8")
            except OSError as exc:
                raise PullError(f"cannot read the manifest {manifest}: {exc}") from exc
        return _manifest_entry(text, source.filename, manifest)
    r = client.get(source.url + ".sha256")  # a checksum file beside it, if the server has one
    if r.status_code == 200 and r.text.strip():
        return _hex(r.text.split()[0], source.shown + ".sha256")
    return None


def _range_of(r: httpx.Response) -> tuple[int, int | None] | None:
    """(first byte, total size or None) of a 206's Content-Range."""
    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)$", r.headers.get("content-range", ""))
    if m is None:
        return None
    return int(m[1]), (int(m[2]) if m[2] != "*" else None)


def _total_of(r: httpx.Response) -> int | None:
    """The whole file's size, as the response declares it."""
    if r.status_code == 206:
        rng = _range_of(r)
        return rng[1] if rng is not None else None
    length = r.headers.get("content-length")
    return int(length) if length and length.isdigit() else None


def download(
    client: httpx.Client,
    url: str,
    part: Path,
    *,
    progress: Progress | None = None,
    attempts: int = ATTEMPTS,
    backoff_s: float = 0.5,
) -> str:
    """Fetch ``url`` into ``part`` (resuming what it holds); its SHA-256."""
    digest = hashlib.sha256()
    if part.exists():
        with part.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    have = part.stat().st_size if part.exists() else 0
    total: int | None = None
    failure: str | None = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(min(backoff_s * 2 ** (attempt - 1), 8.0))
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with client.stream("GET", url, headers=headers) as r:
                if r.status_code == 416 and have:  # nothing after what we have
                    return digest.hexdigest()
                if r.status_code not in (200, 206):
                    raise PullError(f"{url} answered HTTP {r.status_code}")
                rng = _range_of(r) if r.status_code == 206 else None
                restart = bool(have) if r.status_code == 200 else rng is None or rng[0] != have
                if restart:
                    part.unlink(missing_ok=True)  # not the range asked for: from the start
                    digest, have = hashlib.sha256(), 0
                    if r.status_code == 206:
                        failure = "the server answered another range than asked"
                        continue
                total = _total_of(r)
                _check_space(part, (total - have) if total is not None else 0)
                with part.open("ab") as f:
                    for chunk in r.iter_bytes():  # as it arrives: nothing held back if it drops
                        f.write(chunk)
                        digest.update(chunk)
                        have += len(chunk)
                        if progress is not None:
                            progress(have, total)
        except httpx.TransportError as exc:  # dropped, reset, timed out: resume
            failure = f"{type(exc).__name__}: {exc}"
            continue
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise PullError(
                    f"the disk filled while writing {part} ({have} bytes kept); "
                    "free some space and pull again to resume"
                ) from exc
            raise
        if total is None or have >= total:
            return digest.hexdigest()
        failure = f"the connection ended at {have} of {total} bytes"
    raise PullError(
        f"download incomplete after {attempts} attempts ({failure}); {have} bytes kept in "
        f"{part}: run the same pull again to resume"
    )


def _check_space(part: Path, needed: int) -> None:
    free = shutil.disk_usage(part.parent).free
    if needed > free:
        raise PullError(
            f"not enough disk space for this model: {needed} bytes needed, {free} free in "
            f"{part.parent}"
        )


def pull(
    registry: Registry,
    spec: str,
    *,
    name: str | None = None,
    version: str | None = None,
    sha256: str | None = None,
    manifest: str | None = None,
    mirror: str | None = None,
    verify: bool = True,
    progress: Progress | None = None,
    client: httpx.Client | None = None,
    attempts: int = ATTEMPTS,
    backoff_s: float = 0.5,
) -> ModelVersion:
    """Download ``spec`` and register it as ``name@version``."""
    source = source_of(spec, mirror)
    name = check_name(name or Path(source.filename).stem)
    own = client is None
    http = client or httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0, read=60.0))
    try:
        expected = expected_sha256(http, source, sha256, manifest)
        if expected is None and verify:
            raise PullError(
                f"no SHA-256 to check {source.filename} against: pass --sha256 HEX or "
                "--manifest SHA256SUMS (or --no-verify to trust the transfer)"
            )
        key = hashlib.sha256(source.url.encode()).hexdigest()[:16]
        part = registry.downloads() / f"{key}-{source.filename}.part"
        actual = download(
            http, source.url, part, progress=progress, attempts=attempts, backoff_s=backoff_s
        )
    finally:
        if own:
            http.close()
    if expected is not None and actual != expected:
        part.unlink(missing_ok=True)
        raise PullError(
            f"SHA-256 mismatch for {source.filename}: expected {expected}, got {actual}; "
            "the download was deleted: pull again (check the hash and the source)"
        )
    final = part.with_name(source.filename)
    part.replace(final)
    return registry.add(
        name,
        final,
        source=source.shown,
        version=version,
        sha256=actual,
        move=True,
        quantization=gguf_file_type(final),
    )


def gguf_kind(path: Path) -> str | None:
    """``adapter`` for a GGUF LoRA adapter, ``model`` for another GGUF; None for another
    format or without the ``gguf`` package."""
    try:
        from gguf import GGUFReader
    except ImportError:
        return None
    try:
        field = GGUFReader(path).fields.get("general.type")
    except (ValueError, OSError):
        return None
    return "adapter" if field is not None and field.contents() == "adapter" else "model"


def gguf_file_type(path: Path) -> str | None:
    """The file type a GGUF declares (``Q8_0``, ``F16``…); None for another format or
    without the ``gguf`` package."""
    try:
        from gguf import GGUFReader, LlamaFileType
    except ImportError:
        return None
    try:
        reader = GGUFReader(path)
    except (ValueError, OSError):
        return None
    field = reader.fields.get("general.file_type")
    if field is None:
        return None
    value = int(field.parts[field.data[0]][0])
    try:
        return LlamaFileType(value).name.removeprefix("MOSTLY_")
    except ValueError:
        return str(value)
