"""The `zoo` command: list, info, encode, decode, demo, and the commands installed packages add to it.

    zoo list
    zoo info beast-lasa
    zoo encode beast-lasa traj.csv -o tokens.npz --num-tokens 20
    zoo decode beast-lasa tokens.npz -o recon.csv
    zoo decode tokens.npz -o recon.csv                                     # the name the token file records
    zoo encode flextok-tiny-nat32 photo.jpg -o tokens.npz --num-tokens 16   # any size and mode
    zoo decode flextok-tiny-nat32 tokens.npz -o recon.png                  # back at the photo's size
    zoo train configs/beast/lasa.yaml
    zoo demo
    zoo shards images --split train --n 20000 --out shards/images-train

`train` and `shards` belong to the training recipes, which the library never imports: the recipes declare
them as entry points of the `zoo.commands` group (pyproject.toml, recipes/commands.py) and `zoo` finds them
there by name, so any package can add a command the same way.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import warnings
from pathlib import Path
from typing import Any

COMMANDS = "zoo.commands"  # the entry-point group of contributed commands (recipes/commands.py)
BUDGET_KNOBS = ("num_tokens", "quality", "ratio", "num_codebooks", "bitrate", "search")


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_options(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"options are KEY=VALUE, got {pair!r}")
        out[key.replace("-", "_")] = _value(value)
    return out


def _keywords(keywords: list[list[str]]) -> str:
    """`name=default` for each keyword-only argument of a family's encode/decode (`hub.family_info`)."""
    return ", ".join(f"{name}={default}" for name, default in keywords) or "none"


def _bits(row: dict[str, Any]) -> str:
    """The bits of a `list_tokenizers` row: per sample at the most tokens, audio in kbit/s at the most codebooks,
    else what its card says ("variable"); "?" for a name registered without them."""
    if row.get("bits") is not None:
        return f"{row['bits']:.0f}"
    if row.get("kbps") is not None:
        return f"{row['kbps']:.3g} kbps max"
    return row.get("bits_note") or "?"


def _cells(row: dict[str, Any]) -> list[str]:
    """modality, tokens, vocab and bits of a `list_tokenizers` row as `zoo list` and `zoo info` print them."""
    return [str(row[k]) if row.get(k) is not None else "?" for k in ("modality", "tokens", "vocab")] + [_bits(row)]


def cmd_list(args: argparse.Namespace) -> None:
    import zoo

    rows = zoo.list_tokenizers()
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    header = ["name", "modality", "tokens", "vocab", "bits", "headline"]
    table = [[r["name"], *_cells(r), r.get("headline", "")] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    for row in [header, *table]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def _listed(name: str) -> dict[str, Any] | None:
    """The `list_tokenizers` row of a registered name (None for a folder or hub path)."""
    from zoo import hub

    return next((r for r in hub.list_tokenizers() if r["name"] == name), None)


def cmd_info(args: argparse.Namespace) -> None:
    from zoo import hub

    release = hub.unfetched_release(args.name)
    if release is not None:  # what the index knows; its contract is printed once it is downloaded
        rel, summary, knobs = release.release, release.summary, hub.family_info(release.family)
        where = f"hf-hub:{rel.hf_repo}@{rel.revision or 'main'}" if rel.hf_repo else rel.url
        modality, tokens, vocab, bits = _cells(_listed(args.name))  # as `zoo list` shows them
        print("\n".join([
            f"name:         {args.name}",
            f"family:       {release.family}",
            f"files:        not downloaded yet: zoo.load({args.name!r}) fetches {', '.join(rel.files)} from {where} "
            "and converts them once into the cache",
            f"modality:     {modality}",
            f"tokens:       {tokens}",
            f"vocabulary:   {vocab}",
            f"bits:         {bits}",
            f"licence:      {rel.license} ({rel.license_url}){'; non-commercial' if rel.non_commercial else ''}",
            f"encode knobs: {_keywords(knobs['encode'])}", f"decode opts:  {_keywords(knobs['decode'])}",
            f"about:        {summary.get('description', '')}"]))
        return
    directory = hub.locate(args.name)
    config = hub.read_config(directory)
    spec = config.get("spec", {})
    inp = spec.get("input", {})
    summary = hub.shipped_summary(args.name, directory)  # a shipped name: all from the index, no torch
    if summary is None:
        from zoo.processing import describe_spec

        summary = {**config.get("summary", {}), **describe_spec(spec)}
    lines = [
        f"name:         {args.name}",
        f"family:       {config['family']}",
        f"files:        {directory}",
        f"modality:     {spec.get('modality')}",
        f"input layout: ({', '.join(inp.get('layout', '').split())})  dtype {inp.get('dtype')}",
        f"value range:  {inp.get('value_range') or 'unbounded'}",
    ]
    if inp.get("sizes"):
        lines.append(f"fixed sizes:  {inp['sizes']}")
    if inp.get("multiples"):
        lines.append(f"multiples:    {inp['multiples']}")
    if inp.get("sample_rate"):
        lines.append(f"sample rate:  {inp['sample_rate']} Hz")
    lines += [
        f"vocabulary:   {spec.get('vocab_size')} x {spec.get('num_codebooks')} codebook(s)",
        f"max tokens:   {spec.get('max_tokens')}",
        f"latent dim:   {spec.get('latent_dim')}",
    ]
    if "processor" in summary:
        lines.append(f"processor:    {summary['processor']}")
        lines.append(f"              {summary['processor_options']}")
    knobs = hub.family_info(config["family"])  # from the index: no model is built for `zoo info`
    lines += [f"encode knobs: {_keywords(knobs['encode'])}", f"decode opts:  {_keywords(knobs['decode'])}",
              "every call:   batch_size=N (at most N samples at a time); decode also force=True (tokens of another tokenizer)"]
    if summary.get("description"):
        lines.append(f"about:        {summary['description']}")
    for k, v in summary.get("metrics", {}).items():
        lines.append(f"card {k}: {v:.6g}" if isinstance(v, float) else f"card {k}: {v}")
    print("\n".join(lines))


def _processor(tok: Any, args: argparse.Namespace) -> Any:
    """The tokenizer's processor with -P overrides, or None with --raw (or for modalities without one)."""
    from zoo.processing import processor_for

    if args.raw:
        if args.process:
            raise ValueError("--raw skips the processor, so -P/--process options do not apply")
        return None
    return processor_for(tok, **parse_options(args.process))


def cmd_encode(args: argparse.Namespace) -> None:
    import torch

    import zoo
    from zoo.io import read_input, read_raw

    tok = zoo.load(args.name)
    spec = tok.spec
    proc = _processor(tok, args)
    if proc is None:
        x = read_input(args.input, spec.modality, spec.input.sample_rate)
    else:
        processed = proc(read_raw(args.input, spec.modality))
        x = processed.batch
    budget = {k: getattr(args, k) for k in BUDGET_KNOBS if getattr(args, k) not in (None, False)}
    options = parse_options(args.option)
    twice = sorted(set(budget) & set(options))
    if twice:
        raise ValueError(f"{', '.join(twice)} given both as a flag and as -O")
    with torch.no_grad():
        tokens = tok.encode(x, **budget, **options)
    if proc is not None:
        tokens = processed.attach(tokens)
    tokens.save(args.output)
    print(f"{args.input} -> {args.output}: {tokens.batch_size} sample(s), "
          f"{tokens.lengths.tolist()} tokens, ids {None if tokens.ids is None else tuple(tokens.ids.shape)}")


def _maker(tokens: Any, args: argparse.Namespace) -> str:
    """The registered name a token file records as its maker: what `zoo decode TOKENS` loads without a NAME."""
    made, usage = tokens.provenance, f"zoo decode NAME {args.tokens} -o {args.output}"
    if made is None:
        raise ValueError(f"{args.tokens} does not record which tokenizer made it; give its name: {usage}")
    if _listed(made.tokenizer) is None:
        raise ValueError(f"{args.tokens} was made by a {made.tokenizer!r} tokenizer that was not loaded by a registered "
                         f"name (a folder, hub repo or URL), so the file does not say where to load it from; give it: "
                         f"{usage}")
    return made.tokenizer


def cmd_decode(args: argparse.Namespace) -> None:
    import torch

    import zoo
    from zoo.io import write_output
    from zoo.tokenizer import Tokens

    with warnings.catch_warnings():
        if args.name is None:  # a file that records no maker is refused below, with what to do instead
            warnings.filterwarnings("ignore", "'.*' does not say which tokenizer made it")
        tokens = Tokens.load(args.tokens)
    tok = zoo.load(args.name or _maker(tokens, args))
    with torch.no_grad():
        y = tok.decode(tokens, force=args.force, **parse_options(args.option))
    proc = _processor(tok, args)
    rate = tok.spec.input.sample_rate
    if proc is not None and "input_index" in tokens.meta:  # made by the processor: back at the input's size
        outs = proc.invert(y, tokens.meta)
        if len({tuple(o.shape) for o in outs}) > 1:
            raise ValueError(f"the token file holds {len(outs)} inputs of different sizes; decode them one file each")
        y = torch.stack(outs)
        rate = int(tokens.meta["input_rate"][0]) if "input_rate" in tokens.meta else rate
    write_output(args.output, y, tok.spec.modality, rate)
    print(f"{args.tokens} -> {args.output}: {tuple(y.shape)}")


def cmd_demo(args: argparse.Namespace) -> None:
    from zoo.demo import run_demo

    run_demo(Path(args.out))


def parser(contributed: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zoo", description="Tokenizers for multimodal LLMs behind one interface.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("list", help="registered tokenizers")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("info", help="input contract, vocabulary and card metrics of a tokenizer")
    s.add_argument("name")
    process_help = {
        "encode": "Images (any size; PIL modes RGB, RGBA, L, P, 16-bit...), clips (.gif/.mp4/.npy, any length and size) "
                  "and recordings (any sample rate and channel count) are brought to the tokenizer's input contract by "
                  "its processor, shown by `zoo info NAME`: images resized (interpolation and fit as recorded), clips "
                  "resized and cut into segments of the tokenizer's frame count, recordings resampled with torchaudio, "
                  "downmixed to the tokenizer's channels and clamped to [-1, 1]. The token file records the input's "
                  "size, length and rate, so `zoo decode` writes the output back at them. --raw skips all this: the "
                  "input must then meet the contract exactly.",
        "decode": "NAME may be left out: the token file records the registered name of the tokenizer that made it "
                  "(`zoo decode tokens.npz -o out.png`); given, it must be that tokenizer unless --force. "
                  "When the tokens were made by `zoo encode` with its processor (the default), the output is written "
                  "back at the input's size, length, sample rate and channel count (an image stretched to 32x32 comes "
                  "back at its own size; segments of a long clip or recording are joined and trimmed). --raw writes "
                  "the decoder's output as it is.",
    }
    for name, helptext in (("encode", "encode a file to tokens (.npz or .safetensors)"),
                           ("decode", "decode a token file to a file of the tokenizer's modality")):
        s = sub.add_parser(name, help=helptext, description=f"{helptext[0].upper()}{helptext[1:]}. {process_help[name]}")
        if name == "decode":
            s.add_argument("name", nargs="?", help="registered name, checkpoint folder, hf-hub:org/repo; default: the "
                                                   "registered name the token file records as its maker")
            s.add_argument("tokens")
        else:
            s.add_argument("name", help="registered name, checkpoint folder, hf-hub:org/repo")
            s.add_argument("input")
        s.add_argument("-o", "--output", required=True)
        s.add_argument("--option", "-O", action="append", default=[], metavar="KEY=VALUE",
                       help=f"another keyword of {name} (`zoo info NAME` lists them), e.g. "
                            + ("-O sample=True" if name == "encode" else "-O steps=8 -O seed=0"))
        s.add_argument("--process", "-P", action="append", default=[], metavar="KEY=VALUE",
                       help="processor option, e.g. -P fit=crop, -P interpolation=bilinear, -P segment_seconds=10")
        s.add_argument("--raw", action="store_true", help="no processor: the input must meet the contract exactly")
        if name == "decode":
            s.add_argument("--force", action="store_true",
                           help="decode tokens another tokenizer made (their file records which); expect garbage")
        if name == "encode":
            s.add_argument("--num-tokens", dest="num_tokens", type=int)
            s.add_argument("--quality", type=float)
            s.add_argument("--ratio", type=_value)
            s.add_argument("--num-codebooks", dest="num_codebooks", type=int)
            s.add_argument("--bitrate", type=float)
            s.add_argument("--search", action="store_true", help="measured budget search (KARL, CAT)")
    s = sub.add_parser("demo", help="round-trip a real sample through every shipped tokenizer")
    s.add_argument("--out", default="out/demo")
    for name, entry in (contributed or {}).items():
        if name not in sub.choices:
            sub.add_parser(name, add_help=False, help=f"from {entry.module.split('.')[0]} (`zoo {name} --help`)")
    return p


def contributed_commands() -> dict[str, Any]:
    """Commands other installed packages add to `zoo` (the recipes add `train` and `shards`), by name.

    They are entry points of the `zoo.commands` group, each a function `command(argv: list[str]) -> int` that
    gets the rest of the command line. Listing them imports none of them.
    """
    from importlib.metadata import entry_points

    found: dict[str, Any] = {}
    for entry in entry_points(group=COMMANDS):
        found.setdefault(entry.name, entry)  # the first on sys.path wins, as for imports
    return found


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    builtin = {"list": cmd_list, "info": cmd_info, "encode": cmd_encode, "decode": cmd_decode, "demo": cmd_demo}
    contributed = {} if argv[:1] and argv[0] in builtin else contributed_commands()  # `zoo list` looks no further
    if argv[:1] and argv[0] in contributed:
        return _run_contributed(argv[0], contributed[argv[0]], argv[1:])
    args = parser(contributed).parse_args(argv)
    try:
        builtin[args.command](args)
    except (ValueError, OSError) as e:  # user error (bad input, name, file or path): one line, no traceback
        _error(args.command, e)
        return 2
    return 0


def _error(command: str, e: Exception) -> None:
    message = " ".join(str(e).split()) or type(e).__name__
    print(f"zoo {command}: error: {message}", file=sys.stderr)


def _run_contributed(name: str, entry: Any, argv: list[str]) -> int:
    try:
        command = entry.load()
    except ImportError as e:
        _error(name, ImportError(f"the command comes from {entry.value}, which does not import ({e})"))
        return 2
    try:
        return int(command(argv) or 0)
    except (ValueError, OSError) as e:
        _error(name, e)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
