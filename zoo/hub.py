"""Names, sources and files: `load`, `list_tokenizers`, `register`, and checkpoint save/load.

A checkpoint is a directory with `config.json` (family, config, fitted state, spec, the sha256 of the
weights), `model.safetensors` and a `README.md` card. Registered names resolve, in order, to this
repo's `checkpoints/<name>`, the user cache (`$ZOO_CACHE/checkpoints/<name>`), the Hugging Face hub
and a URL; every file is checked against the sha256 recorded for it. Nothing here imports torch until
a tokenizer is actually built, so `import zoo` and `zoo.list_tokenizers()` stay fast.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.data.cache import atomic_write_bytes, cache_root

if TYPE_CHECKING:
    from zoo.tokenizer import Tokenizer

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CARD = "README.md"
FORMAT_VERSION = 1
REPO_CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
REGISTRY_FILE = Path(__file__).resolve().parent / "registry.json"

# family name -> "module:Class", imported only when a checkpoint of that family is built
_FAMILIES: dict[str, str] = {
    "beast": "zoo.action.beast:BEAST",
    "binning": "zoo.action.baselines:Binning",
    "dct-bpe": "zoo.action.baselines:DCTBPE",
    "flextok": "zoo.image.flextok:FlexTok",
    "karl": "zoo.image.karl:KARL",
    "cat": "zoo.image.cat:CAT",
    "larp": "zoo.video.larp:LARP",
    "codec": "zoo.audio.codec:Codec",
    "vqtoken": "zoo.reduce.vq:VQToken",
}


@dataclass
class Entry:
    """A registered name: its family, the sha256 of each file, where else to fetch it, a summary."""

    name: str
    family: str
    sha256: dict[str, str] = field(default_factory=dict)
    hf_repo: str | None = None
    url: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)


_NAMES: dict[str, Entry] | None = None


def _names() -> dict[str, Entry]:
    global _NAMES
    if _NAMES is None:
        _NAMES = {}
        if REGISTRY_FILE.exists():
            for name, e in json.loads(REGISTRY_FILE.read_text()).items():
                _NAMES[name] = Entry(name=name, **e)
    return _NAMES


def register(name: str, family: str, *, sha256: dict[str, str] | None = None, hf_repo: str | None = None,
             url: str | None = None, summary: dict[str, Any] | None = None) -> Entry:
    """Register a name so `zoo.load(name)` finds it (e.g. a checkpoint on your own hub repo or server)."""
    if family not in _FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {sorted(_FAMILIES)}")
    entry = Entry(name, family, dict(sha256 or {}), hf_repo, url, dict(summary or {}))
    _names()[name] = entry
    return entry


def register_family(family: str, target: str | type) -> None:
    """Make `family` loadable: `target` is the Tokenizer subclass or its "module:Class" path."""
    path = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"
    known = _FAMILIES.get(family)
    if known is not None and known != path:
        raise ValueError(f"family {family!r} is already registered to {known}, not {path}")
    _FAMILIES[family] = path


def family_class(family: str) -> type["Tokenizer"]:
    if family not in _FAMILIES:
        raise ValueError(f"unknown tokenizer family {family!r}; known: {sorted(_FAMILIES)}")
    module, cls = _FAMILIES[family].split(":")
    return getattr(importlib.import_module(module), cls)


def list_tokenizers() -> list[dict[str, Any]]:
    """Every registered name with modality, tokens, vocabulary, bits and the card's headline metric."""
    return [{"name": e.name, "family": e.family, **e.summary} for e in sorted(_names().values(), key=lambda e: e.name)]


# ----------------------------------------------------------------------------------------- integrity


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_sha(path: Path, expected: str | None) -> None:
    if not path.is_file():
        raise ValueError(f"checkpoint file is missing: {path}")
    if expected is not None and (got := sha256_file(path)) != expected:
        raise ValueError(
            f"sha256 mismatch for {path}: expected {expected[:16]}…, got {got[:16]}… "
            "(the file is damaged or was changed; delete it to fetch it again)"
        )


# ----------------------------------------------------------------------------------------- save / load


def save_checkpoint(tok: "Tokenizer", directory: Path, card: str | None = None,
                    summary: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint directory; each file is written atomically."""
    from safetensors.torch import save

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in tok.state_dict().items()}
    weights = save(state, metadata={"family": tok.family})
    atomic_write_bytes(directory / WEIGHTS, weights)
    config = {
        "format_version": FORMAT_VERSION,
        "family": tok.family,
        "config": tok.config_dict(),
        "extra": tok.extra_state(),
        "spec": tok.spec.to_dict(),
        "files": {WEIGHTS: hashlib.sha256(weights).hexdigest()},
        "summary": summary or {},
    }
    atomic_write_bytes(directory / CONFIG, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
    if card is not None:
        atomic_write_bytes(directory / CARD, card.encode())
    return directory


def read_config(directory: Path, expected_sha: str | None = None) -> dict[str, Any]:
    path = directory / CONFIG
    _check_sha(path, expected_sha)
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    missing = [k for k in ("family", "config", "files") if k not in config]
    if missing:
        raise ValueError(f"{path} is not a zoo checkpoint config: missing {missing}")
    if config.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {config['format_version']}; upgrade zoo to read it")
    return config


def load_dir(directory: str | Path, *, family: str | None = None, sha256: dict[str, str] | None = None,
             device: Any = None) -> "Tokenizer":
    """Build a tokenizer from a checkpoint directory, checking hashes and keys strictly."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from zoo.tokenizer import config_from_dict

    directory = Path(directory)
    sha256 = sha256 or {}
    config = read_config(directory, sha256.get(CONFIG))
    if family is not None and config["family"] != family:
        raise ValueError(f"{directory} holds a {config['family']!r} checkpoint, expected family {family!r}")
    weights = directory / WEIGHTS
    _check_sha(weights, sha256.get(WEIGHTS, config["files"].get(WEIGHTS)))
    cls = family_class(config["family"])
    tok = cls(config_from_dict(cls.config_class, config["config"]))
    tok.load_extra_state(config.get("extra", {}))
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{weights} is truncated or not a safetensors file: {e}") from e
    missing, unexpected = _key_diff(tok.state_dict().keys(), state.keys())
    if missing or unexpected:
        raise ValueError(f"{weights} does not match a {config['family']!r} model: missing keys {missing}, unexpected {unexpected}")
    tok.load_state_dict(state, strict=True)
    tok.eval()
    return tok.to(device) if device is not None else tok


def _key_diff(want, have) -> tuple[list[str], list[str]]:
    want, have = set(want), set(have)
    return sorted(want - have), sorted(have - want)


def load(source: str | os.PathLike, *, device: Any = None, sha256: str | None = None,
         revision: str | None = None) -> "Tokenizer":
    """Load a tokenizer by registered name, local directory, "hf-hub:org/repo" or http(s) URL.

    Args:
        source: a name from `list_tokenizers()`, a checkpoint directory, "hf-hub:org/repo[@revision]",
            or the URL of a checkpoint directory.
        device: where to put the model (default CPU).
        sha256: for a URL, the sha256 of its config.json (which records the weights' sha256).
        revision: for the hub, a branch, tag or commit.
    """
    directory, family, expected = resolve(source, sha256=sha256, revision=revision)
    tok = load_dir(directory, family=family, sha256=expected, device=device)
    tok.name = os.fspath(source)  # recorded in the provenance of the tokens it makes
    return tok


def locate(source: str | os.PathLike, **kwargs: Any) -> Path:
    """The local checkpoint folder `source` resolves to (downloading into the cache if needed)."""
    return resolve(source, **kwargs)[0]


def resolve(source: str | os.PathLike, *, sha256: str | None = None,
            revision: str | None = None) -> tuple[Path, str | None, dict[str, str]]:
    """(folder, expected family, expected sha256 per file) for any source `load` accepts."""
    source = os.fspath(source)
    if source.startswith("hf-hub:"):
        repo, _, rev = source[len("hf-hub:"):].partition("@")
        return _from_hf(repo, revision or rev or None, {}), None, {}
    if source.startswith(("http://", "https://")):
        if sha256 is None:
            raise ValueError(f"loading from a URL needs the sha256 of its config.json: zoo.load({source!r}, sha256=...)")
        return _from_url(source, {CONFIG: sha256}), None, {CONFIG: sha256}
    entry = _names().get(source)
    if entry is not None:
        return _locate(entry), entry.family, entry.sha256
    path = Path(source).expanduser()
    if path.is_dir():
        return path, None, {}
    if path.exists() or os.sep in source or source.startswith("."):
        raise ValueError(f"{source!r} is not a checkpoint directory (expected a folder with {CONFIG} and {WEIGHTS})")
    close = difflib.get_close_matches(source, list(_names()), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else f"; known: {', '.join(sorted(_names())) or 'none'}"
    raise ValueError(f"{source!r} is not a registered tokenizer name{hint}")


def _locate(entry: Entry) -> Path:
    """The first source that holds `entry`'s files: repo checkpoints/, the cache, the hub, the URL."""
    for directory in (REPO_CHECKPOINTS / entry.name, cache_root() / "checkpoints" / entry.name):
        if (directory / CONFIG).is_file():
            return directory
    if entry.hf_repo:
        return _from_hf(entry.hf_repo, None, entry.sha256, cache_dir=cache_root() / "checkpoints" / entry.name)
    if entry.url:
        return _from_url(entry.url, entry.sha256, cache_dir=cache_root() / "checkpoints" / entry.name)
    raise ValueError(f"{entry.name!r} is registered but no source holds it (no checkpoints/ folder, cache, hub repo or URL)")


def _from_hf(repo: str, revision: str | None, sha256: dict[str, str], cache_dir: Path | None = None) -> Path:
    """Download config + weights with huggingface_hub (which honours HF_HUB_OFFLINE) into one folder."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    paths = {}
    for name in (CONFIG, WEIGHTS):
        try:
            paths[name] = Path(hf_hub_download(repo, name, revision=revision, cache_dir=cache_root() / "hf"))
        except LocalEntryNotFoundError as e:
            raise ValueError(
                f"hf-hub:{repo} is not in the cache and the hub cannot be reached (offline or HF_HUB_OFFLINE=1): {e}"
            ) from e
        except (EntryNotFoundError, RepositoryNotFoundError) as e:
            raise ValueError(f"hf-hub:{repo} has no file {name}: {e}") from e
    directory = paths[CONFIG].parent
    if cache_dir is not None:  # a registered name: copy into its own cache folder, checked, atomically
        for name, p in paths.items():
            _check_sha(p, sha256.get(name))
            atomic_write_bytes(cache_dir / name, p.read_bytes())
        return cache_dir
    return directory


def _from_url(url: str, sha256: dict[str, str], cache_dir: Path | None = None) -> Path:
    """Fetch `url/config.json` and `url/model.safetensors` into the cache, checking each sha256."""
    base = url.rstrip("/")
    cache_dir = cache_dir or cache_root() / "url" / hashlib.sha256(base.encode()).hexdigest()[:16]
    config_path = cache_dir / CONFIG
    if not _matches(config_path, sha256.get(CONFIG)):
        _download(f"{base}/{CONFIG}", config_path, sha256.get(CONFIG))
    weights_sha = sha256.get(WEIGHTS) or read_config(cache_dir, sha256.get(CONFIG))["files"].get(WEIGHTS)
    if not _matches(cache_dir / WEIGHTS, weights_sha):
        _download(f"{base}/{WEIGHTS}", cache_dir / WEIGHTS, weights_sha)
    return cache_dir


def _matches(path: Path, sha: str | None) -> bool:
    return path.is_file() and (sha is None or sha256_file(path) == sha)


def _download(url: str, path: Path, sha: str | None) -> None:
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("ZOO_OFFLINE") == "1":
        raise ValueError(f"{url} is not cached and downloads are disabled (offline)")
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            data = r.read()
    except (urllib.error.URLError, OSError) as e:
        raise ValueError(f"could not download {url}: {e}") from e
    if sha is not None and (got := hashlib.sha256(data).hexdigest()) != sha:
        raise ValueError(f"sha256 mismatch for {url}: expected {sha[:16]}…, got {got[:16]}…; nothing was written")
    atomic_write_bytes(path, data)


# ----------------------------------------------------------------------------------------- the shipped index


def _spec_summary(spec: dict[str, Any]) -> dict[str, Any]:
    """What `zoo list` shows for any checkpoint, taken from its spec (a card's summary may refine it)."""
    if not spec:
        return {}
    vocab = spec.get("vocab_size")
    q = spec.get("num_codebooks", 1)
    return {"modality": spec.get("modality"), "vocab": vocab if q == 1 else f"{vocab} x {q}", "tokens": spec.get("max_tokens")}


def index_checkpoints(root: Path = REPO_CHECKPOINTS, hf_org: str = "zoo-tokenizers") -> dict[str, Any]:
    """Rebuild zoo/registry.json from the checkpoint folders under `root` (run after shipping one)."""
    index = {}
    for directory in sorted(p for p in root.iterdir() if (p / CONFIG).is_file()):
        if "family" not in json.loads((directory / CONFIG).read_text()):
            continue  # a shipped model that is not a tokenizer (a host classifier, a demo LM)
        config = read_config(directory)
        index[directory.name] = {
            "family": config["family"],
            "sha256": {n: sha256_file(directory / n) for n in (CONFIG, WEIGHTS)},
            "hf_repo": f"{hf_org}/{directory.name}",
            "summary": {**_spec_summary(config.get("spec", {})), **config.get("summary", {})},
        }
    atomic_write_bytes(REGISTRY_FILE, (json.dumps(index, indent=2, sort_keys=True) + "\n").encode())
    global _NAMES
    _NAMES = None
    return index
