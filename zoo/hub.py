"""The one reader and writer of checkpoint folders: names, families, releases, sources, cache, integrity.

A checkpoint is a folder, for tokenizers, reducers, host models and the LM alike:

    config.json         {"format_version": 1, "family": "beast", "config": {...}, "extra": {...},
                         "spec": {...}, "files": {"model.safetensors": "<sha256>", ...}, "summary": {...},
                         "license": {"spdx": ..., "url": ..., "non_commercial": ...}, "source": {...}}
    model.safetensors   the weights (never pickle), loaded with strict key matching
    README.md           the model card (data, recipe, measured numbers, licence)

`config.json` is the manifest: it is written last, names the family (a registered class, never an
import path) and records the sha256 of every other file; a folder whose config records no weight hash
is refused. `save_module` writes the whole folder into a sibling staging folder and swaps it in, so a
crash or a second writer never leaves a mixed folder.

Registering (at the bottom of a family file, timm style):

    register_family(BEAST, presets=PRESETS)      # BEAST.family names it; presets -> "beast-<preset>"
    register_release(                            # a model released by its authors, converted on first load
        "dac-44khz", "dac", hf_repo="descript/dac_44khz", revision="<commit>", files=("model.safetensors",),
        license="MIT", license_url="https://github.com/descriptinc/descript-audio-codec/blob/main/LICENSE",
        summary={"modality": "audio", "description": "..."})

A family may define `listing(cls, config) -> dict`: the fields of `zoo list` its config alone determines (tokens,
max_tokens, vocab, bits per sample at the most tokens, or kbps at the most codebooks for audio; `token_summary`
and `zoo.audio.rvq.rate_summary` write them). Its releases' registrations take their summary from it, and the
index adds it to each shipped checkpoint of the family (the card's summary wins where both say something).

A family whose class converts released weights provides `from_release(cls, path) -> module` (path: the
folder holding the release files, as downloaded, or a file or folder a user downloaded by hand) and
`is_release(path) -> bool` (a cheap sniff, no weights read). `load("dac-44khz")` downloads the listed
files (huggingface_hub, or `url` + sha256), calls `from_release`, saves our checkpoint in
`$ZOO_CACHE/checkpoints/<name>` (safetensors + sha256, the licence and source on its card) and loads
strictly from there; later loads do not convert again. `load(path)` of a folder or file that is not a
zoo checkpoint asks each family's `is_release` and converts the same way. A non-commercial licence is
printed (a warning) once per process on load.

Families whose construction needs more than `cls(config_dataclass)` (the LM: a vocabulary and a text
tokenizer file beside the weights) define `from_checkpoint(cls, config, extra, directory) -> module`;
the weights are still loaded here, strictly. Extra files go in with `save_module(..., files={name: bytes})`
and are hash-checked like the weights.

Sources, in order: an existing local path (it wins over a name), a registered name (this package's
shipped `checkpoints/<name>`, then the cache, then its hub repo, URL or release), "hf-hub:org/repo[@rev]",
an http(s) URL with the sha256 of its config.json. `import zoo` and `list_tokenizers()` read the
generated index `zoo/registry.json` (rebuild it with `python -c "import zoo.hub as h; h.write_index()"`;
a test checks it is current)
and the user registry `$ZOO_CACHE/registry.json` (`register(..., persist=True)`); nothing here imports
torch until a model is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import hashlib
import importlib
import json
import math
import os
import re
import shutil
import sys
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from zoo.files import (atomic_write_bytes, cache_root, check_sha, download, folder_lock, offline, same_sha,
                       sha256_file, staging_folder, writing_folder)

__all__ = ["load", "save_module", "push_to_hub", "list_tokenizers", "register", "register_family", "register_release",
           "locate", "read_config", "config_from_dict", "Pretrained", "Entry", "Release"]

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CARD = "README.md"
FORMAT_VERSION = 1
PACKAGE = Path(__file__).resolve().parent
# shipped checkpoints: zoo/checkpoints in a wheel; in a checkout the repo's checkpoints/ (zoo/checkpoints links to it)
REPO_CHECKPOINTS = (PACKAGE / "checkpoints").resolve()
REGISTRY_FILE = PACKAGE / "registry.json"

MAX_CONFIG_BYTES = 64 << 20  # config.json (fitted BPE merges make some large; none ships above 1 MB)
MAX_JSON_DEPTH = 32
MAX_NAME = 200
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
SHA_RE = re.compile(r"[0-9a-fA-F]{64}")
COMMIT_RE = re.compile(r"[0-9a-f]{40}")
REVISION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")


# ----------------------------------------------------------------------------------------- registrations


@dataclass(frozen=True)
class Release:
    """Released weights of a model, as their authors host them, converted by `family.from_release`.

    Args:
        files: file names to fetch (in the hub repo, or relative to `url`).
        license: SPDX id of the weights' licence ("MIT", "CC-BY-NC-4.0").
        license_url: where the licence text lives.
        non_commercial: the licence forbids commercial use (printed on load).
        hf_repo, revision: the Hugging Face repo and pinned commit (None: the default branch).
        url: base URL instead of a hub repo; then `sha256` must give each file's hash.
        sha256: expected hash per file name (optional with a pinned hub revision).
        sizes: bytes per file where known (caps the download).
    """

    files: tuple[str, ...]
    license: str
    license_url: str
    non_commercial: bool = False
    hf_repo: str | None = None
    revision: str | None = None
    url: str | None = None
    sha256: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)


@dataclass
class Entry:
    """A registered name: its family, the sha256 of our checkpoint's files, where to fetch it, a summary."""

    name: str
    family: str
    sha256: dict[str, str] = field(default_factory=dict)
    hf_repo: str | None = None
    url: str | None = None
    revision: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    release: Release | None = None
    shipped: bool = False

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "name" and v not in (None, {}, False)}
        if self.release is not None:
            d["release"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self.release).items()}
        return d

    @classmethod
    def from_json(cls, name: str, d: dict[str, Any]) -> "Entry":
        d = dict(d)
        if d.get("release") is not None:
            d["release"] = Release(**{**d["release"], "files": tuple(d["release"]["files"])})
        return cls(name=name, **d)


_FAMILIES: dict[str, dict[str, Any]] = {}  # family -> {"module", "class", "tokenizer", "presets"}: registered live
_CLASSES: dict[str, type] = {}  # family -> class, once imported
_NAMES: dict[str, Entry] | None = None
_INDEX: dict[str, Any] | None = None
_WARNED: set[str] = set()
_RELEASES: dict[str, Entry] = {}  # releases registered by code in this process (the index builder collects them)


def _index() -> dict[str, Any]:
    global _INDEX
    if _INDEX is None:
        data = json.loads(REGISTRY_FILE.read_text()) if REGISTRY_FILE.is_file() else {}
        _INDEX = {"families": data.get("families", {}), "names": data.get("names", {})}
    return _INDEX


def _families() -> dict[str, dict[str, Any]]:
    return {**_index()["families"], **_FAMILIES}


def user_registry_file() -> Path:
    return cache_root() / "registry.json"


def _read_user_registry() -> dict[str, Any]:
    path = user_registry_file()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError, RecursionError) as e:
        warnings.warn(f"ignoring the user registry {path}: not readable JSON ({e})", stacklevel=3)
        return {}
    if not isinstance(data, dict):
        warnings.warn(f"ignoring the user registry {path}: expected a JSON object", stacklevel=3)
        return {}
    return data


def _names() -> dict[str, Entry]:
    global _NAMES
    if _NAMES is None:
        _NAMES = {name: Entry.from_json(name, e) for name, e in _index()["names"].items()}
        for name, e in _read_user_registry().items():
            try:
                entry = Entry.from_json(name, e)
                _check_name(name)
                _check_name(entry.family, "family")
            except (TypeError, ValueError) as err:
                warnings.warn(f"ignoring {name!r} in {user_registry_file()}: {err}", stacklevel=2)
                continue
            _NAMES.setdefault(name, entry)  # a user entry never shadows a shipped or released name
    return _NAMES


def _check_name(name: Any, what: str = "name") -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a {what} must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME or not NAME_RE.fullmatch(name):
        shown = name if len(name) <= 60 else name[:60] + f"… ({len(name)} characters)"
        raise ValueError(f"{what} {shown!r} is not valid: letters, digits, '.', '_' and '-', at most {MAX_NAME} characters")
    return name


def register_family(cls: type, *, presets: Iterable[str] = ()) -> type:
    """Make a model class loadable by its `family` name (call it at the bottom of the family's file).

    Args:
        cls: a class with `family` (str), `config_class` (a dataclass) and `__init__(config)`;
            optionally `from_release`/`is_release` (released weights) and `from_checkpoint` (custom build).
        presets: names of its architecture presets, listed as "<family>-<preset>" with pretrained=False.
    """
    family = _check_name(getattr(cls, "family", None), "family")
    info = {"module": cls.__module__, "class": cls.__qualname__, "tokenizer": hasattr(cls, "spec"),
            "presets": sorted(presets), "releases": hasattr(cls, "from_release"),
            "encode": _keywords(getattr(cls, "encode", None)), "decode": _keywords(getattr(cls, "decode", None)),
            "modality": _family_modality(cls)}
    known = _families().get(family)
    if known is not None and (known["module"], known["class"]) != (info["module"], info["class"]):
        raise ValueError(f"family {family!r} is already registered to {known['module']}:{known['class']}, "
                         f"not {info['module']}:{info['class']}")
    _FAMILIES[family] = info
    _CLASSES[family] = cls
    return cls


def _keywords(fn: Any) -> list[list[str]]:
    """[name, repr(default)] of a method's keyword-only arguments (its budget knobs or decode options), in the
    signature's order (a list: the index is written with sorted keys), kept in the index so `zoo info` shows
    them without importing torch."""
    if fn is None:
        return []
    import inspect

    params = inspect.signature(fn).parameters.values()
    return [[p.name, repr(p.default)] for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def shipped_summary(name: str, directory: Path) -> dict[str, Any] | None:
    """The index's summary of `name` (spec summary, processor line, card summary) when `directory` is its shipped
    folder; None otherwise (a local folder of that name, the cache, a user's checkpoint)."""
    entry = _names().get(name)
    if entry is None or not entry.shipped or Path(directory).resolve() != (REPO_CHECKPOINTS / name).resolve():
        return None
    return entry.summary


def family_info(family: str) -> dict[str, Any]:
    """What the index knows of a family: module, class, presets, and its `encode`/`decode` keywords."""
    info = _families().get(family) if isinstance(family, str) else None
    if info is None:
        raise ValueError(f"unknown family {family!r}; known: {sorted(_families())}")
    if "encode" not in info:  # an index written before keywords were recorded
        cls = family_class(family)
        info = {**info, "encode": _keywords(getattr(cls, "encode", None)), "decode": _keywords(getattr(cls, "decode", None))}
    return info


def family_class(family: str) -> type:
    """The class registered for `family` (imports its module on first use)."""
    if family in _CLASSES:
        return _CLASSES[family]
    info = _families().get(family) if isinstance(family, str) else None
    if info is None:
        raise ValueError(f"unknown family {family!r}; known: {sorted(_families())}")
    module = importlib.import_module(info["module"])
    cls = getattr(module, info["class"])
    _CLASSES[family] = cls
    return cls


def _stale(old: Entry, entry: Entry) -> bool:
    """`old` is what the index (or the user registry) recorded of the release `entry` re-registers: a release of the
    same family not yet registered in this process, so editing a release's registration and re-writing the index
    works. A second registration of the name in one process, or one over a shipped checkpoint, is a clash."""
    return (entry.release is not None and old.release is not None and not old.shipped and old.family == entry.family
            and entry.name not in _RELEASES)


def _add(entry: Entry, persist: bool) -> Entry:
    names = _names()
    old = names.get(entry.name)
    if old is not None and old != entry and (old.shipped or old.release is not None) and not _stale(old, entry):
        kind = "a shipped checkpoint" if old.shipped else "a release"
        raise ValueError(f"{entry.name!r} is already registered as a shipped or released model ({kind} of family "
                         f"{old.family!r}); pick another name")
    names[entry.name] = entry
    if persist:
        path = user_registry_file()
        with folder_lock(path):
            data = _read_user_registry()
            data[entry.name] = entry.to_json()
            atomic_write_bytes(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
    return entry


def register(name: str, family: str, *, sha256: dict[str, str] | None = None, hf_repo: str | None = None,
             url: str | None = None, revision: str | None = None, summary: dict[str, Any] | None = None,
             persist: bool = False) -> Entry:
    """Register a name for a zoo checkpoint elsewhere (your hub repo or server) so `zoo.load(name)` finds it.

    Args:
        sha256: expected hash per file ("config.json", "model.safetensors"); required with `url`.
        persist: also write it to the user registry ($ZOO_CACHE/registry.json), read by every later process.
    """
    _check_name(name)
    if family not in _families():
        raise ValueError(f"unknown family {family!r}; known: {sorted(_families())}")
    if url is not None and CONFIG not in (sha256 or {}):
        raise ValueError(f"registering a URL needs the sha256 of its {CONFIG}: register(..., sha256={{'{CONFIG}': ...}})")
    for f, h in (sha256 or {}).items():
        if not isinstance(h, str) or not SHA_RE.fullmatch(h):
            raise ValueError(f"sha256 of {f!r} must be 64 hex digits, got {h!r}")
    return _add(Entry(name, family, {k: v.lower() for k, v in (sha256 or {}).items()}, hf_repo, url, revision,
                      dict(summary or {})), persist)


def register_release(name: str, family: str, *, files: Iterable[str], license: str, license_url: str,
                     non_commercial: bool = False, hf_repo: str | None = None, revision: str | None = None,
                     url: str | None = None, sha256: dict[str, str] | None = None, sizes: dict[str, int] | None = None,
                     summary: dict[str, Any] | None = None, persist: bool = False) -> Entry:
    """Register a model its authors released; `load(name)` fetches, converts once (`family.from_release`), caches.

    Args: see `Release`; `summary` is what `list_tokenizers` shows before anything is downloaded
    (modality, tokens, max_tokens, vocab, bits or kbps, headline, description): the family's `listing(config)` of
    the release's preset, plus its description.
    """
    _check_name(name)
    files = tuple(files)
    if not files or not all(isinstance(f, str) and FILE_RE.fullmatch(f.replace("/", "_")) and ".." not in f for f in files):
        raise ValueError(f"a release lists its file names (relative, no '..'), got {files!r}")
    if (hf_repo is None) == (url is None):
        raise ValueError(f"a release comes from a hub repo or a URL (exactly one), got hf_repo={hf_repo!r} url={url!r}")
    if url is not None and set(sha256 or {}) != set(files):
        raise ValueError(f"a URL release records the sha256 of every file {files}, got {sorted(sha256 or {})}")
    if not license or not license_url:
        raise ValueError("a release records its licence: an SPDX id and the URL of its text")
    release = Release(files, license, license_url, bool(non_commercial), hf_repo, revision, url,
                      {k: v.lower() for k, v in (sha256 or {}).items()}, dict(sizes or {}))
    summary = {**(summary or {}), "license": license, "non_commercial": bool(non_commercial)}
    entry = _add(Entry(name, family, summary=summary, release=release), persist)
    _RELEASES[name] = entry
    return entry


# ----------------------------------------------------------------------------------------- listing


def token_summary(modality: str, vocab: int, max_tokens: int, *, min_tokens: int = 1) -> dict[str, Any]:
    """What `zoo list` shows of `min_tokens`..`max_tokens` tokens of a `vocab`-id codebook: bits at the most tokens.

    A family's `listing(config)` returns it from its config, so a release's row says what its preset says.
    """
    return {"modality": modality, "tokens": f"{min_tokens}-{max_tokens}" if min_tokens < max_tokens else str(max_tokens),
            "max_tokens": max_tokens, "vocab": vocab, "bits": max_tokens * math.log2(vocab)}


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _as_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _row(entry: Entry, info: dict[str, Any]) -> dict[str, Any]:
    s = entry.summary
    bits = s.get("bits")
    return {
        "name": entry.name,
        "family": entry.family,
        "modality": s.get("modality"),
        "tokens": None if s.get("tokens") is None else str(s["tokens"]),
        "max_tokens": _as_int(s.get("max_tokens")),
        "vocab": None if s.get("vocab") is None else str(s["vocab"]),
        "bits": _number(bits),
        "bits_note": bits if isinstance(bits, str) else s.get("bits_note"),
        "kbps": _number(s.get("kbps")),
        "headline": str(s.get("headline", "")),
        "description": str(s.get("description", "")),
        "pretrained": True,
        "shipped": entry.shipped,
        "release": entry.release is not None,
        "license": s.get("license") or (entry.release.license if entry.release else None),
        "non_commercial": bool(entry.release.non_commercial) if entry.release else bool(s.get("non_commercial", False)),
        "metrics": dict(s.get("metrics", {})),
        "summary": s,  # everything the card's summary says (a superset of the typed fields above)
    }


def list_tokenizers(pattern: str | None = None, *, modality: str | None = None,
                    pretrained: bool = True) -> list[dict[str, Any]]:
    """Registered tokenizers, sorted by name, with typed fields.

    Args:
        pattern: a shell-style filter on the name ("flex*", "*-nat32").
        modality: keep only "image", "video", "audio", "action" or "features".
        pretrained: True lists names with weights (shipped, registered, released); False lists the
            architectures (family presets, "<family>-<preset>") that build at random initialisation.

    Returns:
        One dict per name: name, family, modality (str), tokens (str, as the card words it),
        max_tokens (int | None), vocab (str), bits (float | None, per sample at the most tokens), bits_note
        (str | None: what the card says instead, e.g. "variable"), kbps (float | None: audio, kbit/s at the most
        codebooks),
        headline, description, pretrained, shipped, release, license, non_commercial, metrics.
    """
    families = _families()
    rows = []
    if pretrained:
        for e in _names().values():
            info = families.get(e.family, {})
            if info.get("tokenizer", True):
                rows.append(_row(e, info))
    else:
        for family, info in families.items():
            if info.get("tokenizer"):
                for p in info.get("presets", []):
                    rows.append({"name": f"{family}-{p}", "family": family, "preset": p, "pretrained": False,
                                 "modality": info.get("modality")})
    if pattern is not None:
        rows = [r for r in rows if fnmatch.fnmatchcase(r["name"], pattern)]
    if modality is not None:
        rows = [r for r in rows if r.get("modality") == modality]
    return sorted(rows, key=lambda r: r["name"])


# ----------------------------------------------------------------------------------------- config checks


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _depth(x: Any, limit: int, level: int = 0) -> None:
    if level > limit:
        raise ValueError(f"nested deeper than {limit} levels")
    if isinstance(x, dict):
        for v in x.values():
            _depth(v, limit, level + 1)
    elif isinstance(x, list):
        for v in x:
            _depth(v, limit, level + 1)


def parse_json(data: bytes | str, source: str, *, max_bytes: int = MAX_CONFIG_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON with bounds: size, nesting depth, no NaN/Infinity; any failure is a one-line ValueError."""
    if len(data) > max_bytes:
        raise ValueError(f"{source} is {len(data)} bytes, more than the {max_bytes} a zoo JSON file may have")
    try:
        value = json.loads(data, parse_constant=_reject_constant)
        _depth(value, max_depth)
    except RecursionError:
        raise ValueError(f"{source} is nested too deeply to be a zoo JSON file") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{source} is not valid JSON: {str(e).splitlines()[0]}") from None
    return value


def validate_config(config: Any, source: str) -> dict[str, Any]:
    """Check the generic structure of a checkpoint's config.json (the family checks its own values)."""
    if not isinstance(config, dict):
        raise ValueError(f"{source} must hold a JSON object, got {type(config).__name__}")
    missing = [k for k in ("family", "config", "files") if k not in config]
    if missing:
        raise ValueError(f"{source} is not a zoo checkpoint config: missing {missing}")
    version = config.get("format_version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{source}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{source} has format_version {version}; upgrade zoo to read it")
    if not isinstance(config["family"], str):
        raise ValueError(f"{source}: family must be a string, got {type(config['family']).__name__}")
    _check_name(config["family"], "family")
    for key in ("config", "files", "extra", "spec", "summary", "license", "source"):
        if key in config and not isinstance(config[key], dict):
            raise ValueError(f"{source}: {key!r} must be a JSON object, got {type(config[key]).__name__}")
    for name, sha in config["files"].items():
        if not FILE_RE.fullmatch(name):
            raise ValueError(f"{source}: file name {name[:80]!r} must be a plain name in the folder")
        if not isinstance(sha, str) or not SHA_RE.fullmatch(sha):
            raise ValueError(f"{source}: the sha256 of {name!r} must be 64 hex digits, got {str(sha)[:80]!r}")
    if WEIGHTS not in config["files"]:
        raise ValueError(f"{source} records no sha256 for {WEIGHTS}: refusing weights nothing vouches for")
    return config


def read_config(directory: str | os.PathLike, expected_sha: str | None = None) -> dict[str, Any]:
    """config.json of a checkpoint folder, hash-checked when `expected_sha` is given, structure validated."""
    path = Path(directory) / CONFIG
    check_sha(path, expected_sha)
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ValueError(f"{path} is {path.stat().st_size} bytes, more than the {MAX_CONFIG_BYTES} a config may have")
    return validate_config(parse_json(path.read_bytes(), str(path)), str(path))


def _type_ok(value: Any, hint: Any) -> bool:
    """Does a JSON value fit a dataclass field's annotation? Unknown annotations pass (the family checks)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list, typing.Sequence) or hint in (tuple, list):
        if not isinstance(value, list):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return len(args) != 1 or all(_type_ok(v, args[0]) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    return True


def config_from_dict(config_class: type, d: Any) -> Any:
    """Build a config dataclass from a JSON object: unknown keys and wrong JSON types are ValueErrors.

    A config class may list `renamed_fields = {"old": "new"}` (a ClassVar): checkpoints written before a
    field was renamed load with the old key read as the new one. Bounds on values are the family's
    (its `__post_init__`), checked before the model allocates anything.
    """
    name = config_class.__name__
    if not isinstance(d, dict):
        raise ValueError(f"a {name} must be a JSON object, got {type(d).__name__}")
    for old, new in getattr(config_class, "renamed_fields", {}).items():
        if old in d:
            if new in d:
                raise ValueError(f"{name} config has both {old!r} (the old name) and {new!r}; keep {new!r}")
            d = {(new if k == old else k): v for k, v in d.items()}
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"{name} has no field(s) {unknown}; known: {sorted(fields)}")
    try:
        hints = typing.get_type_hints(config_class)
    except Exception:  # annotations that do not resolve here: leave the types to the family
        hints = {}
    kwargs = {}
    for key, value in d.items():
        hint = hints.get(key)
        if hint is not None and not _type_ok(value, hint):
            shown = json.dumps(value)[:80]
            raise ValueError(f"{name}.{key} must be {getattr(hint, '__name__', None) or str(hint).replace('typing.', '')}, "
                             f"got {shown}")
        kwargs[key] = tuple(value) if isinstance(value, list) and "tuple" in str(fields[key].type) else value
    try:
        return config_class(**kwargs)
    except (TypeError, OverflowError, RecursionError) as e:
        raise ValueError(f"{name} cannot be built from this config: {e}") from None


# ----------------------------------------------------------------------------------------- save


def _state_for_saving(module: Any, dtype: Any = None) -> dict[str, Any]:
    """Tensors to write: contiguous CPU copies; tensors sharing memory (tied embeddings) written once."""
    state, seen = {}, {}
    for k, v in module.state_dict().items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride())) if v.numel() else None
        if key is not None and key in seen:
            continue  # an alias of a tensor already written; loading restores the tie
        if key is not None:
            seen[key] = k
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        state[k] = v.contiguous()
    return state


def _card_licence(card: str, license: dict[str, Any] | None, source: dict[str, Any] | None) -> str:
    if not license or "## Licence" in card:
        return card
    lines = [f"\n## Licence\n{license.get('spdx')} ({license.get('url')})"]
    if license.get("non_commercial"):
        lines.append("**Non-commercial**: these weights may not be used commercially.")
    if source:
        lines.append(f"Converted from {source.get('hf_repo') or source.get('url') or source.get('path')}"
                     + (f" at revision {source['revision']}" if source.get("revision") else "") + ".")
    return card.rstrip("\n") + "\n" + "\n".join(lines) + "\n"


def save_module(module: Any, directory: str | os.PathLike, *, family: str | None = None,
                config: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                spec: dict[str, Any] | None = None, card: str | None = None, summary: dict[str, Any] | None = None,
                files: dict[str, bytes] | None = None, dtype: Any = None, license: dict[str, Any] | None = None,
                source: dict[str, Any] | None = None) -> Path:
    """Write any registered model as a checkpoint folder, whole or not at all.

    Args:
        module: an nn.Module (or anything with `state_dict()`) of a registered family.
        family: default `module.family`.
        config: JSON object of its config; default `dataclasses.asdict(module.config)`.
        extra: JSON state beyond weights (fitted bounds, BPE merges); default `module.extra_state()` if any.
        spec: default `module.spec.to_dict()` for tokenizers.
        card: README.md text (kept from the old folder when None).
        summary: measured numbers and the description `list_tokenizers` shows.
        files: more files beside the weights (e.g. the LM's vocabulary.json), hash-checked on load.
        dtype: store floating weights in this dtype (loading casts back to the model's).
        license: {"spdx", "url", "non_commercial"}; source: where converted weights came from.
    """
    directory = Path(directory)
    with writing_folder(directory) as stage:
        write_checkpoint(module, stage, family=family, config=config, extra=extra, spec=spec, card=card,
                         summary=summary, files=files, dtype=dtype, license=license, source=source)
    return directory


def write_checkpoint(module: Any, folder: Path, *, family: str | None = None, config: dict[str, Any] | None = None,
                     extra: dict[str, Any] | None = None, spec: dict[str, Any] | None = None, card: str | None = None,
                     summary: dict[str, Any] | None = None, files: dict[str, bytes] | None = None, dtype: Any = None,
                     license: dict[str, Any] | None = None, source: dict[str, Any] | None = None) -> None:
    """The files of a checkpoint, written into `folder` (a staging folder: no lock, no swap; see `save_module`)."""
    from safetensors.torch import save

    family = family or getattr(module, "family", None)
    _check_name(family, "family")
    if config is None:
        config = dataclasses.asdict(module.config)
    if extra is None:
        extra = module.extra_state() if hasattr(module, "extra_state") else {}
    if spec is None and hasattr(module, "spec") and hasattr(module.spec, "to_dict"):
        spec = module.spec.to_dict()
    weights = save(_state_for_saving(module, dtype), metadata={"family": family})
    blobs = {WEIGHTS: weights, **(files or {})}
    for name in blobs:
        if not FILE_RE.fullmatch(name) or name in (CONFIG, CARD):
            raise ValueError(f"extra checkpoint file {name!r} must be a plain name other than {CONFIG} and {CARD}")
    manifest = {
        "format_version": FORMAT_VERSION,
        "family": family,
        "config": config,
        "extra": extra,
        "files": {n: hashlib.sha256(b).hexdigest() for n, b in blobs.items()},
        "summary": summary or {},
    }
    if spec is not None:
        manifest["spec"] = spec
    if license:
        manifest["license"] = license
    if source:
        manifest["source"] = source
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    for name, data in blobs.items():
        _write(folder / name, data)
    if card is not None:
        _write(folder / CARD, _card_licence(card, license, source).encode())
    _write(folder / CONFIG, text.encode())  # the manifest last


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# ----------------------------------------------------------------------------------------- load


class _Pinned:
    """A folder opened once: every file is read from that same folder even if a writer swaps a new one in meanwhile.

    Files are opened relative to the folder's descriptor and read through /proc/self/fd (Linux), so a
    reader never pairs one save's config with another save's weights. Elsewhere the plain paths are used.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fds: dict[str, int] = {}
        self.dir_fd: int | None = None
        if Path("/proc/self/fd").is_dir() and directory.is_dir():
            self.dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))

    def path(self, name: str) -> Path:
        if self.dir_fd is None:
            return self.directory / name
        if name not in self.fds:
            try:
                self.fds[name] = os.open(name, os.O_RDONLY, dir_fd=self.dir_fd)
            except FileNotFoundError:
                raise ValueError(f"checkpoint file is missing: {self.directory / name}") from None
            except IsADirectoryError:
                raise ValueError(f"{self.directory / name} is a folder, not a checkpoint file") from None
        return Path(f"/proc/self/fd/{self.fds[name]}")

    def close(self) -> None:
        for fd in [*self.fds.values(), *([self.dir_fd] if self.dir_fd is not None else [])]:
            os.close(fd)
        self.fds.clear()
        self.dir_fd = None


def load_dir(directory: str | os.PathLike, *, family: str | None = None, sha256: dict[str, str] | None = None,
             device: Any = None, name: str | None = None) -> Any:
    """Build a model from a checkpoint folder, checking every file's sha256 and every weight key."""
    directory = Path(directory)
    folder = _Pinned(directory)
    try:
        return _load_pinned(folder, family, sha256 or {}, device, name)
    finally:
        folder.close()


def _load_pinned(folder: _Pinned, family: str | None, sha256: dict[str, str], device: Any, name: str | None) -> Any:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = folder.directory
    config_path = folder.path(CONFIG)
    check_sha(config_path, sha256.get(CONFIG))
    if config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise ValueError(f"{directory / CONFIG} is {config_path.stat().st_size} bytes, more than the "
                         f"{MAX_CONFIG_BYTES} a config may have")
    config = validate_config(parse_json(config_path.read_bytes(), str(directory / CONFIG)), str(directory / CONFIG))
    if family is not None and config["family"] != family:
        raise ValueError(f"{directory} holds a {config['family']!r} checkpoint, expected family {family!r}")
    for fname, sha in config["files"].items():
        try:
            check_sha(folder.path(fname), sha256.get(fname, sha))
        except ValueError as e:
            raise ValueError(str(e).replace(str(folder.path(fname)), str(directory / fname))) from None
    cls = family_class(config["family"])
    extra = config.get("extra", {})
    if hasattr(cls, "from_checkpoint"):
        module = cls.from_checkpoint(config["config"], extra, directory)
    else:
        module = cls(config_from_dict(cls.config_class, config["config"]))
        if extra or hasattr(module, "load_extra_state"):
            if not hasattr(module, "load_extra_state"):
                raise ValueError(f"{directory}: a {config['family']!r} model takes no extra state, got {sorted(extra)}")
            module.load_extra_state(extra)
    weights = directory / WEIGHTS
    try:
        state = load_file(str(folder.path(WEIGHTS)), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"{weights} is truncated or not a safetensors file: {str(e).splitlines()[0]}") from None
    _load_state_strict(module, state, weights, config["family"])
    if hasattr(module, "eval"):
        module.eval()
    if hasattr(module, "name") and name is not None:
        module.name = name
    _warn_licence(config, name or str(directory))
    return module.to(device) if device is not None else module


def _load_state_strict(module: Any, state: dict[str, Any], weights: Path, family: str) -> None:
    """load_state_dict(strict=True), where a tensor tied to another (same storage) may be stored once."""
    own = module.state_dict()
    groups: dict[tuple, list[str]] = {}
    for k, v in own.items():
        if v.numel():
            groups.setdefault((v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape)), []).append(k)
    for names in groups.values():
        present = [n for n in names if n in state]
        if len(names) > 1 and present:
            for n in names:
                state.setdefault(n, state[present[0]])
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{weights} does not match a {family!r} model: missing keys {missing[:10]}, "
                         f"unexpected {unexpected[:10]}")
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        raise ValueError(f"{weights} does not match a {family!r} model: {bad[0]} is {tuple(state[bad[0]].shape)}, "
                         f"the config builds {tuple(own[bad[0]].shape)}")
    module.load_state_dict(state, strict=True)


def _warn_licence(config: dict[str, Any], what: str) -> None:
    lic = config.get("license") or {}
    if lic.get("non_commercial") and what not in _WARNED:
        _WARNED.add(what)
        warnings.warn(f"{what}: the weights' licence {lic.get('spdx')} ({lic.get('url')}) forbids commercial use",
                      UserWarning, stacklevel=3)


def load(source: str | os.PathLike, *, device: Any = None, sha256: str | None = None, revision: str | None = None,
         family: str | None = None) -> Any:
    """Load a model by local path, registered name, "hf-hub:org/repo[@revision]" or http(s) URL.

    Args:
        source: a checkpoint folder (or a released file/folder, converted once), a name from
            `list_tokenizers()`, "hf-hub:org/repo[@revision]", or the URL of a checkpoint folder.
        device: where to put the model (default CPU).
        sha256: for a URL, the sha256 of its config.json (which records the weights' sha256).
        revision: for the hub, a branch, tag or commit.
        family: refuse a checkpoint of any other family.
    """
    directory, expected_family, expected, name = _resolve(source, sha256=sha256, revision=revision)
    if family is not None and expected_family is not None and family != expected_family:
        raise ValueError(f"{source!s} is a {expected_family!r} model, expected family {family!r}")
    return load_dir(directory, family=family or expected_family, sha256=expected, device=device, name=name)


def is_registered(name: str) -> bool:
    """Whether `name` is a registered name (shipped, released, or added with `register`)."""
    return isinstance(name, str) and name in _names()


def load_registered(name: str, *, device: Any = None) -> Any:
    """Load a registered name only, never a local path that happens to share it (what a vocabulary's entry names)."""
    entry = _names().get(name)
    if entry is None:
        raise ValueError(f"{name!r} is not a registered name")
    return load_dir(_locate(entry), family=entry.family, sha256=entry.sha256, device=device, name=entry.name)


def locate(source: str | os.PathLike, **kwargs: Any) -> Path:
    """The local checkpoint folder `source` resolves to (downloading or converting into the cache if needed)."""
    return _resolve(source, **kwargs)[0]


def resolve(source: str | os.PathLike, **kwargs: Any) -> tuple[Path, str | None, dict[str, str]]:
    """(folder, expected family, expected sha256 per file) for any source `load` accepts."""
    return _resolve(source, **kwargs)[:3]


def _check_source(source: Any) -> str:
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str):
        raise ValueError(f"a source is a name, a path, 'hf-hub:org/repo' or a URL (a string), got {type(source).__name__}")
    if not source.strip():
        raise ValueError("an empty source names nothing: pass a registered name, a checkpoint folder or 'hf-hub:org/repo'")
    if "\x00" in source or len(source) > 4096:
        raise ValueError(f"{source[:60]!r}… is not a name or a path ({len(source)} characters)")
    return source


def _is_checkpoint(path: Path) -> bool:
    """A zoo checkpoint folder: its config.json names a family (a release's config.json does not)."""
    config = path / CONFIG
    if not config.is_file():
        return False
    try:
        data = parse_json(config.read_bytes(), str(config))
    except (ValueError, OSError):
        return True  # let read_config say what is wrong with it
    return isinstance(data, dict) and "family" in data and "files" in data


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _resolve(source: Any, *, sha256: str | None = None,
             revision: str | None = None) -> tuple[Path, str | None, dict[str, str], str | None]:
    source = _check_source(source)
    if source.startswith("hf-hub:"):
        repo, _, rev = source[len("hf-hub:"):].partition("@")
        return _from_hf(repo, revision or rev or None), None, {}, None
    if source.startswith(("http://", "https://")):
        if sha256 is None:
            raise ValueError(f"loading from a URL needs the sha256 of its config.json: zoo.load({source!r}, sha256=...)")
        return _from_url(source, {CONFIG: sha256}), None, {CONFIG: sha256}, None
    path = Path(source).expanduser()
    if _exists(path):  # an existing local path wins over a registered name, as in Hugging Face
        if path.is_dir() and _is_checkpoint(path):
            return path, None, {}, None
        return _convert_local(path), None, {}, None
    entry = _names().get(source)
    if entry is not None:
        return _locate(entry), entry.family, entry.sha256, entry.name
    if os.sep in source or source.startswith("."):
        raise ValueError(f"{source!r} is not a checkpoint directory (expected a folder with {CONFIG} and {WEIGHTS})")
    _check_name(source)
    close = difflib.get_close_matches(source, list(_names()), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else f"; known: {', '.join(sorted(_names())) or 'none'}"
    raise ValueError(f"{source!r} is not a registered tokenizer name nor an existing path{hint}")


def _complete(directory: Path, sha256: dict[str, str] | None = None) -> bool:
    """A cached folder that holds a whole checkpoint (the manifest is written last, so its presence says so)."""
    if not (directory / CONFIG).is_file():
        return False
    return sha256 is None or CONFIG not in sha256 or same_sha(sha256_file(directory / CONFIG), sha256[CONFIG])


def _local_folder(entry: Entry) -> Path | None:
    """`entry`'s folder where one is here already: shipped, or in the cache (downloaded, converted)."""
    for directory in (REPO_CHECKPOINTS / entry.name, cache_root() / "checkpoints" / entry.name):
        if (directory / CONFIG).is_file():  # the manifest is written last: its presence means a whole folder
            return directory  # (load_dir checks every hash, the registry's first)
    return None


def unfetched_release(source: Any) -> Entry | None:
    """The registered release `source` names while nothing of it is here yet (no local path of that name, no
    converted folder): `zoo info` describes it from the index instead of downloading and converting it."""
    if not isinstance(source, str) or _exists(Path(source).expanduser()):
        return None
    entry = _names().get(source)
    return entry if entry is not None and entry.release is not None and _local_folder(entry) is None else None


def _locate(entry: Entry) -> Path:
    """The first source that holds `entry`'s files: shipped checkpoints, the cache, its release, hub or URL."""
    if (directory := _local_folder(entry)) is not None:
        return directory
    target = cache_root() / "checkpoints" / entry.name
    if entry.release is not None:
        return _convert_release(entry, target)
    if entry.hf_repo:
        return _from_hf(entry.hf_repo, entry.revision, entry.sha256, target)
    if entry.url:
        return _from_url(entry.url, entry.sha256, target)
    raise ValueError(f"{entry.name!r} is registered but no source holds it (no shipped folder, cache, hub repo or URL)")


# ----------------------------------------------------------------------------------------- remote sources


def _hf_download(repo: str, filename: str, revision: str | None, *, sha256: str | None = None, size: int | None = None,
                 max_bytes: int | None = None) -> Path:
    """One file through huggingface_hub's cache: the local copy first, so offline never waits on the network;
    else streamed by `_hf_fetch` (size cap, total deadline, hash checked before it lands in the cache).

    Args:
        sha256: the recorded hash (any case), where known.
        size: the recorded size in bytes, where known; the hub's metadata must agree with it.
        max_bytes: a cap for a file whose size is not recorded (config.json: `MAX_CONFIG_BYTES`).
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    if not repo or not all(_valid_part(p) for p in repo.split("/")) or repo.count("/") > 1:
        raise ValueError(f"hf-hub:{repo[:80]} is not a hub repo id (org/name)")
    if revision is not None and not (REVISION_RE.fullmatch(revision) and ".." not in revision):
        raise ValueError(f"hf-hub:{repo}@{revision[:80]} is not a revision (a branch, tag or commit)")
    cache = cache_root() / "hf"
    try:
        return Path(hf_hub_download(repo, filename, local_files_only=True, revision=revision, cache_dir=cache))
    except (LocalEntryNotFoundError, EntryNotFoundError, FileNotFoundError):
        pass
    if offline():
        raise ValueError(f"hf-hub:{repo} is not in the cache and the hub cannot be reached (offline or HF_HUB_OFFLINE=1)")
    if (reason := _hub_unreachable()) is not None:  # huggingface_hub would retry for ~20 s before saying so
        raise ValueError(f"hf-hub:{repo} is not in the cache and the hub cannot be reached ({reason}); "
                         "connect, or set HF_HUB_OFFLINE=1 to use cached files only")
    return _hf_fetch(repo, filename, revision, cache, sha256=sha256, size=size, max_bytes=max_bytes)


def _hf_fetch(repo: str, filename: str, revision: str | None, cache: Path, *, sha256: str | None, size: int | None,
              max_bytes: int | None) -> Path:
    """Download one hub file into huggingface_hub's cache layout through `zoo.files.download`.

    `hf_hub_download` has no size cap and only a per-read timeout, so the file is asked about first
    (`get_hf_file_metadata`: size, etag, commit, where it lives), then streamed with that size as the cap and a
    total deadline into `blobs/<etag>`, linked from `snapshots/<commit>/<file>` and `refs/<revision>`: the layout
    `hf_hub_download(local_files_only=True)` reads, so later and offline loads find it. Nothing is linked until
    the whole file is there with the right size and hash.
    """
    from urllib.parse import urlparse

    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(repo, filename, revision=revision)
    try:
        meta = get_hf_file_metadata(url, timeout=10)
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise ValueError(f"hf-hub:{repo} has no file {filename}: {str(e).splitlines()[0]}") from None
    except Exception as e:  # HTTP and transport errors (requests or httpx, by huggingface_hub version)
        raise ValueError(f"hf-hub:{repo}: could not ask the hub about {filename}: "
                         f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}") from None
    commit, etag = meta.commit_hash, meta.etag
    if not (commit and COMMIT_RE.fullmatch(commit)) or not (etag and NAME_RE.fullmatch(etag) and len(etag) <= 128):
        raise ValueError(f"hf-hub:{repo}/{filename}: the hub's answer names no usable commit and etag "
                         f"(got {str(commit)[:80]!r}, {str(etag)[:80]!r})")
    if size is not None and meta.size is not None and meta.size != size:
        raise ValueError(f"hf-hub:{repo}/{filename} is {meta.size} bytes on the hub, but {size} are recorded for it; "
                         "nothing was downloaded")
    if size is None and max_bytes is not None and meta.size is not None and meta.size > max_bytes:
        raise ValueError(f"hf-hub:{repo}/{filename} is {meta.size} bytes, more than the {max_bytes} allowed; "
                         "nothing was downloaded")
    storage = cache / repo_folder_name(repo_id=repo, repo_type="model")
    blob = storage / "blobs" / etag
    if not blob.is_file():
        headers = build_hf_headers()
        if urlparse(meta.location).netloc != urlparse(url).netloc:  # a CDN's signed URL: the token stays home
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        download(meta.location, blob, sha256, size=size if size is not None else meta.size, max_bytes=max_bytes,
                 headers=headers)
    pointer = storage / "snapshots" / commit / filename
    if not pointer.exists():
        pointer.parent.mkdir(parents=True, exist_ok=True)
        tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}.tmp")
        try:
            os.symlink(os.path.relpath(blob, pointer.parent), tmp)
        except OSError:  # no symlinks here: a copy, as huggingface_hub does
            shutil.copyfile(blob, tmp)
        os.replace(tmp, pointer)
    if (revision or "main") != commit:
        atomic_write_bytes(storage / "refs" / (revision or "main"), commit.encode())
    return pointer


_REACHABLE: dict[str, str | None] = {}


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face endpoint cannot be reached (DNS, refused, timeout), or None; asked once per process."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    endpoint = constants.ENDPOINT
    if endpoint not in _REACHABLE:
        url = urlparse(endpoint)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            _REACHABLE[endpoint] = None
        except OSError as e:
            _REACHABLE[endpoint] = f"{endpoint}: {e.strerror or e}"
    return _REACHABLE[endpoint]


def _valid_part(p: str) -> bool:
    return bool(p) and len(p) <= 96 and bool(NAME_RE.fullmatch(p))


def _from_hf(repo: str, revision: str | None, sha256: dict[str, str] | None = None, target: Path | None = None) -> Path:
    """Config + weights of a zoo checkpoint on the hub; with `target`, copied there (checked, whole)."""
    sha256 = sha256 or {}
    config = _hf_download(repo, CONFIG, revision, sha256=sha256.get(CONFIG), max_bytes=MAX_CONFIG_BYTES)
    check_sha(config, sha256.get(CONFIG))
    manifest = validate_config(parse_json(config.read_bytes(), f"hf-hub:{repo}/{CONFIG}"), f"hf-hub:{repo}")
    paths = {CONFIG: config, **{n: _hf_download(repo, n, revision, sha256=sha256.get(n, sha))
                                for n, sha in manifest["files"].items()}}
    if target is None:
        return config.parent
    with folder_lock(target):
        if _complete(target, sha256):
            return target
        with staging_folder(target) as stage:
            for n, p in paths.items():
                check_sha(p, sha256.get(n, manifest["files"].get(n)))
                _copy(p, stage / n)
    return target


def _copy(src: Path, dst: Path) -> None:
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while chunk := fi.read(1 << 20):
            fo.write(chunk)
        fo.flush()
        os.fsync(fo.fileno())


def _from_url(url: str, sha256: dict[str, str], target: Path | None = None) -> Path:
    """`url/config.json` and the files it records, into the cache, each checked, the folder swapped in whole."""
    base = url.rstrip("/")
    target = target or cache_root() / "url" / hashlib.sha256(base.encode()).hexdigest()[:16]
    if _complete(target, sha256):
        return target
    with folder_lock(target):
        if _complete(target, sha256):
            return target
        with staging_folder(target) as stage:
            download(f"{base}/{CONFIG}", stage / CONFIG, sha256.get(CONFIG), max_bytes=MAX_CONFIG_BYTES)
            manifest = read_config(stage)
            for n, sha in manifest["files"].items():
                download(f"{base}/{n}", stage / n, sha256.get(n, sha))
    return target


def _convert_release(entry: Entry, target: Path) -> Path:
    """Fetch a release's files, convert them with the family's `from_release`, save our checkpoint at `target`."""
    rel = entry.release
    assert rel is not None
    raw = cache_root() / "releases" / entry.name
    with folder_lock(target):
        if _complete(target):
            return target
        if rel.hf_repo is not None:
            paths = {f: _hf_download(rel.hf_repo, f, rel.revision, sha256=rel.sha256.get(f), size=rel.sizes.get(f))
                     for f in rel.files}
            for f, p in paths.items():
                check_sha(p, rel.sha256.get(f))
            folder = paths[rel.files[0]].parents[len(Path(rel.files[0]).parts) - 1]
            source = {"hf_repo": rel.hf_repo, "revision": rel.revision, "files": {f: sha256_file(p) for f, p in paths.items()}}
            if folder.parent.name == "snapshots":  # the commit the hub resolved: an unpinned release says what it got
                source["commit"] = folder.name
        else:
            if not all((raw / f).is_file() and same_sha(sha256_file(raw / f), rel.sha256[f]) for f in rel.files):
                with folder_lock(raw), staging_folder(raw) as stage:
                    for f in rel.files:
                        (stage / f).parent.mkdir(parents=True, exist_ok=True)
                        download(f"{rel.url.rstrip('/')}/{f}", stage / f, rel.sha256[f], max_bytes=rel.sizes.get(f))
            folder = raw
            source = {"url": rel.url, "files": dict(rel.sha256)}
        license = {"spdx": rel.license, "url": rel.license_url, "non_commercial": rel.non_commercial}
        _save_converted(entry.family, folder, target, license, source, entry.summary, entry.name)
    return target


def _save_converted(family: str, path: Path, target: Path, license: dict[str, Any] | None, source: dict[str, Any],
                    summary: dict[str, Any], name: str) -> None:
    cls = family_class(family)
    if not hasattr(cls, "from_release"):
        raise ValueError(f"family {family!r} cannot convert released weights (no from_release)")
    module = cls.from_release(path)
    card = f"# {name}\n\n{summary.get('description', '')}\n\nConverted by zoo from the released weights.\n"
    if source.get("hf_repo"):
        pinned = f"pinned revision {source['revision']}" if source.get("revision") else "unpinned (the hub's main)"
        card += f"\nSource: https://huggingface.co/{source['hf_repo']} at commit {source.get('commit', '?')}, {pinned}.\n"
    with staging_folder(target) as stage:  # the caller holds the lock on target
        write_checkpoint(module, stage, card=card, summary=summary, license=license, source=source)


def _convert_local(path: Path) -> Path:
    """A release a user downloaded by hand: the family whose `is_release` claims it converts it once, into the cache."""
    claims = []
    for family, info in sorted(_families().items()):
        if not info.get("releases"):
            continue
        cls = family_class(family)
        try:
            if cls.is_release(path):
                claims.append(family)
        except (OSError, ValueError):
            continue
    if not claims:
        what = "a folder" if path.is_dir() else "a file"
        raise ValueError(f"{str(path)!r} is {what} but not a zoo checkpoint (no {CONFIG} naming a family) and no "
                         f"registered family recognises it as released weights")
    if len(claims) > 1:
        raise ValueError(f"{str(path)!r} looks like released weights of several families {claims}; "
                         f"convert it with the family's from_release")
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{claims[0]}".encode()).hexdigest()[:16]
    target = cache_root() / "converted" / f"{claims[0]}-{key}"
    with folder_lock(target):
        if not _complete(target):
            _save_converted(claims[0], path, target, None, {"path": str(path.resolve())}, {}, path.name)
    return target


# ----------------------------------------------------------------------------------------- writing and pushing


class Pretrained:
    """`save_pretrained`, `push_to_hub` and `from_pretrained` for any registered model class (a mixin)."""

    def save_pretrained(self, directory: str | os.PathLike, card: str | None = None, **kwargs: Any) -> Path:
        """Write config.json, model.safetensors (and README.md when `card` is given) into `directory`, whole."""
        return save_module(self, directory, card=card, **kwargs)

    def push_to_hub(self, repo: str, *, card: str | None = None, revision: str | None = None,
                    private: bool = False, token: str | None = None, commit_message: str = "Upload with zoo") -> str:
        """Save to a temporary folder and upload it to the Hugging Face repo `repo`; returns the commit url."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp) / "checkpoint", card=card)
            return push_folder_to_hub(folder, repo, revision=revision, private=private, token=token,
                                      commit_message=commit_message)

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, **kwargs: Any) -> Any:
        module = load(source, **kwargs)
        if not isinstance(module, cls):
            raise ValueError(f"{source!s} holds a {getattr(module, 'family', type(module).__name__)!r} model, "
                             f"not a {getattr(cls, 'family', cls.__name__)!r} one")
        return module


def push_folder_to_hub(folder: str | os.PathLike, repo: str, *, revision: str | None = None, private: bool = False,
                       token: str | None = None, commit_message: str = "Upload with zoo") -> str:
    """Upload a checkpoint folder (checked first: it must load as one) to a Hugging Face repo."""
    from huggingface_hub import HfApi

    if offline():
        raise ValueError(f"cannot push to {repo}: uploads are disabled (offline: ZOO_OFFLINE or HF_HUB_OFFLINE)")
    folder = Path(folder)
    manifest = read_config(folder)
    for n, sha in manifest["files"].items():
        check_sha(folder / n, sha)
    api = HfApi(token=token)
    api.create_repo(repo, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo, folder_path=str(folder), revision=revision, commit_message=commit_message)
    return str(getattr(info, "commit_url", info))


def push_to_hub(source: Any, repo: str, **kwargs: Any) -> str:
    """Upload a model (anything `save_pretrained` writes) or a checkpoint folder to the Hugging Face repo `repo`."""
    if isinstance(source, (str, os.PathLike)):
        return push_folder_to_hub(locate(source), repo, **kwargs)
    return Pretrained.push_to_hub(source, repo, **kwargs)


# ----------------------------------------------------------------------------------------- the generated index


def _spec_summary(spec: dict[str, Any]) -> dict[str, Any]:
    """What `zoo list` shows for any checkpoint, taken from its spec (a card's summary may refine it)."""
    if not spec:
        return {}
    vocab = spec.get("vocab_size")
    q = spec.get("num_codebooks", 1)
    return {"modality": spec.get("modality"), "vocab": vocab if q == 1 else f"{vocab} x {q}",
            "tokens": spec.get("max_tokens"), "max_tokens": spec.get("max_tokens")}


def _import_families() -> None:
    """Import every module of the package, so each family's registrations at its bottom run."""
    import pkgutil

    import zoo

    for info in pkgutil.walk_packages(zoo.__path__, "zoo."):
        if info.name in ("zoo.cli", "zoo.demo", "zoo.__main__") or ".data" in info.name:
            continue
        importlib.import_module(info.name)


def build_index(root: Path = REPO_CHECKPOINTS, hf_org: str = "zoo-tokenizers") -> dict[str, Any]:
    """The index `zoo/registry.json` holds: every family, shipped checkpoint and registered release."""
    from zoo.processing import describe_spec

    _import_families()
    names: dict[str, Any] = {}
    for directory in sorted(p for p in root.iterdir() if (p / CONFIG).is_file()):
        if "family" not in parse_json((directory / CONFIG).read_bytes(), str(directory / CONFIG)):
            continue  # a folder not (yet) in the one format (the demo LM until zoo.llm saves through save_module)
        config = read_config(directory)
        if config["family"] not in _FAMILIES:
            raise ValueError(f"{directory} holds family {config['family']!r}, which no module registers")
        cls = _CLASSES[config["family"]]
        listing = cls.listing(config_from_dict(cls.config_class, config["config"])) if hasattr(cls, "listing") else {}
        names[directory.name] = Entry(
            directory.name, config["family"], {n: sha256_file(directory / n) for n in (CONFIG, WEIGHTS)},
            hf_repo=f"{hf_org}/{directory.name}",
            summary={**_spec_summary(config.get("spec", {})), **describe_spec(config.get("spec", {})), **listing,
                     **config.get("summary", {})}, shipped=True,
        ).to_json()
    for name, e in sorted(_RELEASES.items()):
        if not _families().get(e.family, {}).get("module", "").startswith("zoo."):
            continue  # a release of a family outside the package (a test's) is not the package's to index
        if name in names:
            raise ValueError(f"release {name!r} has the name of a shipped checkpoint folder")
        names[name] = e.to_json()
    families = {}
    for family, info in sorted(_FAMILIES.items()):
        if not info["module"].startswith("zoo."):
            continue
        families[family] = dict(info)
    return {"families": families, "names": names}


def _family_modality(cls: type) -> str | None:
    """The modality a family's package stands for (zoo.image.flextok -> "image"); reducers work on features."""
    part = cls.__module__.split(".")[1] if cls.__module__.count(".") >= 2 else ""
    return {"image": "image", "video": "video", "audio": "audio", "action": "action", "reduce": "features"}.get(part)


def write_index(root: Path = REPO_CHECKPOINTS) -> dict[str, Any]:
    """Rebuild zoo/registry.json (run after shipping a checkpoint or registering a family or release)."""
    global _NAMES, _INDEX
    index = build_index(root)
    atomic_write_bytes(REGISTRY_FILE, (json.dumps(index, indent=1, sort_keys=True) + "\n").encode())
    _NAMES, _INDEX = None, None
    return index


