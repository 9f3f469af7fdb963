"""The `zoo` command: list, info, encode, decode, train, demo.

    zoo list
    zoo info beast-lasa
    zoo encode beast-lasa traj.csv -o tokens.npz --num-tokens 20
    zoo decode beast-lasa tokens.npz -o recon.csv
    zoo decode flextok-tiny-nat32 tokens.npz -o image.png -O steps=8
    zoo train configs/beast/lasa.yaml
    zoo demo
    zoo shards images --split train --n 20000 --out shards/images-train
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any

BUDGET_KNOBS = ("num_tokens", "quality", "ratio", "num_codebooks", "bitrate", "search")


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _options(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"options are KEY=VALUE, got {pair!r}")
        out[key.replace("-", "_")] = _value(value)
    return out


def _keywords(keywords: dict[str, str]) -> str:
    """`name=default` for each keyword-only argument of a family's encode/decode."""
    return ", ".join(f"{name}={default}" for name, default in keywords.items()) or "none"


def cmd_list(args: argparse.Namespace) -> None:
    import zoo

    rows = zoo.list_tokenizers()
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    header = ["name", "modality", "tokens", "vocab", "bits", "headline"]
    table = [[r["name"], r.get("modality", "?"), r.get("tokens", "?"), r.get("vocab", "?"),
              f"{r['bits']:.0f}" if isinstance(r.get("bits"), (int, float)) else "?", r.get("headline", "")] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    for row in [header, *table]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def cmd_info(args: argparse.Namespace) -> None:
    from zoo import hub

    directory = hub.locate(args.name)
    config = hub.read_config(directory)
    spec = config.get("spec", {})
    inp = spec.get("input", {})
    summary = config.get("summary", {})
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
    knobs = hub.family_info(config["family"])  # from the index: no torch import for `zoo info`
    lines += [f"encode knobs: {_keywords(knobs['encode'])}", f"decode opts:  {_keywords(knobs['decode'])}",
              "every call:   batch_size=N (at most N samples at a time); decode also force=True (tokens of another tokenizer)"]
    if summary.get("description"):
        lines.append(f"about:        {summary['description']}")
    for k, v in summary.get("metrics", {}).items():
        lines.append(f"card {k}: {v:.6g}" if isinstance(v, float) else f"card {k}: {v}")
    print("\n".join(lines))


def cmd_encode(args: argparse.Namespace) -> None:
    import torch

    import zoo
    from zoo.io import read_input

    tok = zoo.load(args.name)
    spec = tok.spec
    x = read_input(args.input, spec.modality, spec.input.sample_rate)
    budget = {k: getattr(args, k) for k in BUDGET_KNOBS if getattr(args, k) not in (None, False)}
    options = _options(args.option)
    twice = sorted(set(budget) & set(options))
    if twice:
        raise ValueError(f"{', '.join(twice)} given both as a flag and as -O")
    with torch.no_grad():
        tokens = tok.encode(x, **budget, **options)
    tokens.save(args.output)
    print(f"{args.input} -> {args.output}: {tokens.batch_size} sample(s), "
          f"{tokens.lengths.tolist()} tokens, ids {None if tokens.ids is None else tuple(tokens.ids.shape)}")


def cmd_decode(args: argparse.Namespace) -> None:
    import torch

    import zoo
    from zoo.io import write_output
    from zoo.tokenizer import Tokens

    tok = zoo.load(args.name)
    tokens = Tokens.load(args.tokens)
    with torch.no_grad():
        y = tok.decode(tokens, force=args.force, **_options(args.option))
    write_output(args.output, y, tok.spec.modality, tok.spec.input.sample_rate)
    print(f"{args.tokens} -> {args.output}: {tuple(y.shape)}")


def cmd_train(args: argparse.Namespace, rest: list[str]) -> None:
    from recipes.train import main as train_main

    train_main([args.config, *rest])


def cmd_shards(args: argparse.Namespace) -> None:
    from recipes.shards import write_shards

    options = _options(args.option)
    out = write_shards(args.source, args.split, args.n, args.out, chunk_bytes=args.chunk_bytes, **options)
    print(f"wrote {args.n} {args.source} samples ({args.split}) as shards to {out}")


def cmd_demo(args: argparse.Namespace) -> None:
    from zoo.demo import run_demo

    run_demo(Path(args.out))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zoo", description="Tokenizers for multimodal LLMs behind one interface.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("list", help="registered tokenizers")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("info", help="input contract, vocabulary and card metrics of a tokenizer")
    s.add_argument("name")
    for name, helptext in (("encode", "encode a file to tokens (.npz or .safetensors)"),
                           ("decode", "decode a token file to a file of the tokenizer's modality")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("name", help="registered name, checkpoint folder, hf-hub:org/repo")
        s.add_argument("tokens" if name == "decode" else "input")
        s.add_argument("-o", "--output", required=True)
        s.add_argument("--option", "-O", action="append", default=[], metavar="KEY=VALUE",
                       help=f"another keyword of {name} (`zoo info NAME` lists them), e.g. "
                            + ("-O sample=True" if name == "encode" else "-O steps=8 -O seed=0"))
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
    s = sub.add_parser("train", help="run a recipe: zoo train CONFIG.yaml [--trainer.max_steps=N ...]")
    s.add_argument("config")
    s = sub.add_parser("shards", help="write a dataset builder's output as streamable shards (litdata)")
    s.add_argument("source", help="images, speech, music, lasa or reaching")
    s.add_argument("--split", default="train")
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--out", required=True, help="folder or object-storage URL (s3://...)")
    s.add_argument("--chunk-bytes", dest="chunk_bytes", default="16MB")
    s.add_argument("--option", "-O", action="append", default=[], metavar="KEY=VALUE",
                   help="builder option, e.g. -O resolution=64")
    s = sub.add_parser("demo", help="round-trip a real sample through every shipped tokenizer")
    s.add_argument("--out", default="out/demo")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    args, rest = p.parse_known_args(argv)
    if rest and args.command != "train":
        p.error(f"unrecognised arguments: {' '.join(rest)}")
    try:
        if args.command == "train":
            cmd_train(args, rest)
        else:
            {"list": cmd_list, "info": cmd_info, "encode": cmd_encode, "decode": cmd_decode, "demo": cmd_demo,
             "shards": cmd_shards}[args.command](args)
    except (ValueError, OSError) as e:  # user error (bad input, name, file or path): one line, no traceback
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"zoo {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
