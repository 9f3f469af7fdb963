"""The commands the training recipes add to the `zoo` CLI: `zoo train` and `zoo shards`.

The library never imports this package. pyproject.toml declares these two functions in the `zoo.commands`
entry-point group; `zoo` (zoo/cli.py) finds them there by name and calls them with the rest of its command
line, as pytest finds its plugins. Each first checks that the training extras are installed, so an install
for tokenizing only answers `zoo train` with the line that adds them rather than an ImportError.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

INSTALL = "pip install 'zoo-tokenizers[train]' (in a checkout: pip install -e '.[train]')"


def _installed(command: str, *modules: str) -> bool:
    """Whether `modules` import; if not, one line on stderr naming the missing ones and the install line."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        print(f"zoo {command}: needs the training extras, {', '.join(missing)} not installed: {INSTALL}",
              file=sys.stderr)
    return not missing


def train(argv: list[str]) -> int:
    """`zoo train CONFIG.yaml [--config STAGE.yaml ...] [--output DIR] [--key value ...]` (recipes/train.py)."""
    if not _installed("train", "lightning", "jsonargparse", "yaml"):
        return 2
    from recipes import train as recipe

    if argv[:1] in (["-h"], ["--help"]):
        print(recipe.__doc__)
        return 0
    recipe.main(argv)
    return 0


def shards(argv: list[str]) -> int:
    """`zoo shards SOURCE --n N --out DIR`: a dataset builder's output as streamable shards (recipes/shards.py)."""
    from zoo.cli import parse_options

    p = argparse.ArgumentParser(prog="zoo shards", description=shards.__doc__.split(": ", 1)[1])
    p.add_argument("source", help="images, speech, music, lasa or reaching")
    p.add_argument("--split", default="train")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--out", required=True, help="folder or object-storage URL (s3://...)")
    p.add_argument("--chunk-bytes", dest="chunk_bytes", default="16MB")
    p.add_argument("--option", "-O", action="append", default=[], metavar="KEY=VALUE",
                   help="builder option, e.g. -O resolution=64")
    args = p.parse_args(argv)
    if not _installed("shards", "lightning", "litdata"):
        return 2
    from recipes.shards import write_shards

    out = write_shards(args.source, args.split, args.n, args.out, chunk_bytes=args.chunk_bytes,
                       **parse_options(args.option))
    print(f"wrote {args.n} {args.source} samples ({args.split}) as shards to {out}")
    return 0
