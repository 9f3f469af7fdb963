"""Files that land whole or not at all: the cache root, hashes, atomic writes, locked folder swaps, downloads.

The hub, the dataset cache, vocabularies and token files all write through here, so a crash or a
second process never leaves a half-written file or a folder that mixes two saves:

- `atomic_write_bytes(path, data)`: write a sibling temp file, fsync, rename over `path`.
- `writing_folder(directory)`: under a lock on the parent folder, yields an empty sibling staging folder;
  on success it is swapped in whole (files not rewritten are carried over from the old folder), on an
  exception it is removed. Staging folders left by a killed writer are removed by the next writer.
- `download(url, path, ...)`: streams to a temp file with a size cap and a total deadline, then checks
  the size and sha256 (case-insensitively) before anything is renamed into place. The hub's files come
  through it too (`zoo.hub._hf_download`), into huggingface_hub's cache layout.

No torch here: `import zoo` stays light.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

STAGING = ".zoo-staging"  # suffix of the sibling folders a writer fills before the swap
DEFAULT_MAX_BYTES = 20 << 30  # a download with no recorded size may not exceed 20 GiB
DEFAULT_DEADLINE_S = 3600.0  # nor take more than an hour in all
MIN_BYTES_PER_S = 1 << 20  # ... unless it is so large that an hour means less than 1 MiB/s (`deadline_for`)


def cache_root() -> Path:
    """The user cache (`$ZOO_CACHE`, default `~/.cache/zoo`)."""
    return Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "zoo")).expanduser()


def offline() -> bool:
    """True when downloads are disabled (`ZOO_OFFLINE=1` or `HF_HUB_OFFLINE=1`)."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in ("ZOO_OFFLINE", "HF_HUB_OFFLINE"))


# ----------------------------------------------------------------------------------------- hashes


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def same_sha(got: str, expected: str) -> bool:
    """Hex digests compare case-insensitively (a hash written in upper case is the same hash)."""
    return got.strip().lower() == expected.strip().lower()


def check_sha(path: Path, expected: str | None) -> None:
    """ValueError when `path` is missing or (if `expected` is given) its sha256 differs."""
    if not path.is_file():
        raise ValueError(f"checkpoint file is missing: {path}")
    if expected is not None and not same_sha(got := sha256_file(path), expected):
        raise ValueError(f"sha256 mismatch for {path}: expected {expected[:16]}…, got {got[:16]}… "
                         "(the file is damaged or was changed; delete it to fetch it again)")


# ----------------------------------------------------------------------------------------- atomic files


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either nothing or the whole file (write, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache or checkpoint must be readable by others
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------------------- folders


@contextmanager
def folder_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock for writing `directory` (a flock on its parent folder, so nothing is left behind)."""
    parent = Path(directory).parent
    parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _staging_siblings(directory: Path) -> list[Path]:
    return [p for p in directory.parent.glob(f".{directory.name}.*{STAGING}")]


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextmanager
def staging_folder(directory: Path) -> Iterator[Path]:
    """Yield an empty sibling folder to fill; on success swap it in for `directory`, whole.

    The caller holds `folder_lock(directory)`. Files of the old folder that the new one does not
    write (a train log, a card when none is given) are carried over. A staging folder left by a
    killed writer is removed here, by the next writer.
    """
    directory = Path(directory)
    for debris in _staging_siblings(directory):  # we hold the lock: nobody else is writing these
        shutil.rmtree(debris, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=STAGING))
    try:
        yield stage
        if directory.is_dir():
            for old in directory.iterdir():
                if old.is_file() and not old.is_symlink() and not (stage / old.name).exists():
                    shutil.copy2(old, stage / old.name)
        for p in stage.iterdir():
            os.chmod(p, 0o644)
        os.chmod(stage, 0o755)
        _fsync_dir(stage)
        if directory.is_dir() and _exchange(stage, directory):
            pass  # `stage` now holds the old folder, removed below
        else:
            if directory.is_dir():  # no atomic exchange here: move the old one aside first
                aside = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=STAGING))
                os.rmdir(aside)
                os.rename(directory, aside)
                os.rename(stage, directory)
                stage = aside
            else:
                os.rename(stage, directory)
        _fsync_dir(directory.parent)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextmanager
def writing_folder(directory: str | os.PathLike) -> Iterator[Path]:
    """Lock `directory`, yield a staging folder to fill, then swap it in whole (see `staging_folder`)."""
    directory = Path(directory)
    with folder_lock(directory), staging_folder(directory) as stage:
        yield stage


# ----------------------------------------------------------------------------------------- downloads


def deadline_for(size: int | None) -> float:
    """Total seconds a download of `size` bytes may take: `DEFAULT_DEADLINE_S`, or longer for a file too large to
    arrive in that time at `MIN_BYTES_PER_S` (a 10 GB release on a slow link), never unbounded."""
    return max(DEFAULT_DEADLINE_S, (size or 0) / MIN_BYTES_PER_S)


def download(url: str, path: Path, sha256: str | None = None, *, max_bytes: int | None = None, size: int | None = None,
             deadline_s: float | None = None, headers: dict[str, str] | None = None) -> Path:
    """Stream `url` to `path` through a temp file: at most `max_bytes`, within `deadline_s` in all.

    Args:
        sha256: expected hash (any case); on a mismatch nothing is written.
        max_bytes: size cap (default `DEFAULT_MAX_BYTES`) where the exact size is not known.
        size: the exact size where it is known (a release's record, the hub's metadata): it caps the download,
            and a body that ends short of it is refused too.
        deadline_s: total time allowed, however slowly the server trickles bytes (default `deadline_for(size)`).
        headers: request headers; an `authorization` header is sent to `url`'s host only, never after a redirect.
    """
    import urllib.error
    import urllib.request

    if offline():
        raise ValueError(f"{url} is not cached and downloads are disabled (offline: ZOO_OFFLINE or HF_HUB_OFFLINE)")
    cap = int(size) if size is not None else DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)
    deadline_s = deadline_for(size) if deadline_s is None else float(deadline_s)
    request = urllib.request.Request(url)
    for k, v in (headers or {}).items():
        if k.lower() == "authorization":
            request.add_unredirected_header(k, v)  # a redirect to a CDN must not carry the token
        else:
            request.add_header(k, v)
    start = time.monotonic()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    h, got = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                with urllib.request.urlopen(request, timeout=min(30.0, deadline_s)) as r:
                    declared = r.headers.get("Content-Length")
                    if declared is not None and declared.isdigit() and int(declared) > cap:
                        raise ValueError(f"{url} is {int(declared)} bytes, more than the {cap} allowed; nothing was written")
                    while True:
                        left = deadline_s - (time.monotonic() - start)
                        if left <= 0:
                            raise ValueError(f"{url} took longer than {deadline_s:g} s; nothing was written")
                        sock = getattr(getattr(r.fp, "raw", None), "_sock", None)
                        if sock is not None:
                            sock.settimeout(min(30.0, left))  # no single wait may outlast the deadline
                        chunk = r.read1(1 << 20)  # returns what one receive brings, however little
                        if not chunk:
                            break
                        got += len(chunk)
                        if got > cap:
                            raise ValueError(f"{url} sent more than the {cap} bytes allowed; nothing was written")
                        h.update(chunk)
                        f.write(chunk)
            except (urllib.error.URLError, OSError) as e:  # includes socket timeouts
                if time.monotonic() - start >= deadline_s:
                    raise ValueError(f"{url} took longer than {deadline_s:g} s; nothing was written") from None
                raise ValueError(f"could not download {url}: {e}") from None
            f.flush()
            os.fsync(f.fileno())
        if size is not None and got != size:
            raise ValueError(f"{url} ended after {got} of its {size} bytes; nothing was written")
        if sha256 is not None and not same_sha(h.hexdigest(), sha256):
            raise ValueError(f"sha256 mismatch for {url}: expected {sha256[:16]}…, got {h.hexdigest()[:16]}…; "
                             "nothing was written")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_release(path: str | os.PathLike, config: str, companion: str, keys: tuple[str, ...]) -> tuple[Path, dict] | None:
    """(folder, its JSON config) when `path` (a release folder or a file in it) holds `config`, a JSON object
    naming every key in `keys`, beside `companion`; else None. The cheap sniff of `is_release`: no weights read."""
    import json

    folder = Path(path)
    folder = folder.parent if folder.is_file() else folder
    if not ((folder / config).is_file() and (folder / companion).is_file()):
        return None
    try:
        args = json.loads((folder / config).read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(args, dict) or not all(k in args for k in keys):
        return None
    return folder, args
