"""Make tests/fixtures/mimi_moshi: Kyutai's own Mimi (the moshi package) at a tiny config, in its release layout.

Mimi's original release is the moshi format: kyutai/moshiko-pytorch-bf16 (and Kyutai's other repos) ship the
codec as one safetensors file, `tokenizer-e351c8d8-checkpoint125.safetensors`, with the moshi package's key
names and no config (the architecture is `moshi.models.loaders._mimi_config`; a repo's config.json may name
another one with `mimi_config_name`). The moshi package pins torch < 2.10 and pulls in sentencepiece, sphn,
sounddevice and bitsandbytes, so it cannot join our test environment; this script runs it once and records:

- `tokenizer-tiny-checkpoint1.safetensors`: the weights as the release stores them (plain convolutions, the
  attention's fused `in_proj_weight` / `out_proj.weight`, codebooks as `embedding_sum` + `cluster_usage`);
  reloaded into a fresh official model, strictly, before anything is recorded.
- `tokenizer-weightnorm.safetensors`: the same model as trained (moshi's `norm="weight_norm"`: every SEANet
  convolution as weight_g / weight_v; the attention as the current module names `in_projs.0.weight`).
- `mimi_config.json` (moshi's mimi-config layout: seanet / transformer / quantizer) and `config.json` naming it
  (`mimi_name`, `mimi_config_name`), as `moshi.models.loaders.CheckpointInfo.from_hf_repo` reads a repo.
- `io.safetensors`: input audio (2, 1, S) with a partial last frame; for q in 1, 3, 8 the official codes
  (B, q, T) and decodes (B, 1, T · 1920) of non-streaming `encode`/`decode` (which zero-pads the input to whole
  frames); and streaming mode (`with model.streaming(2)`): the codes of the padded input fed 1 then 2 frames
  at a time, and the decode of the 8-codebook codes fed frame by frame.

The config is shaped like the release (SEANet ratios 8·6·5·4, causal transformers with RoPE, LayerScale and a
context window, split RVQ with 1 semantic codebook) but tiny; every tensor that starts constant (LayerNorm
weights and biases, layer scales, codebook sums and usages) is randomised so each maps a distinct value.

    pip download moshi==0.2.13 --no-deps && pip install --no-deps --target /tmp/moshi moshi-0.2.13-py3-none-any.whl
    PYTHONPATH=/tmp/moshi python scripts/make_mimi_moshi_fixture.py

moshi 0.2.13 on PyPI is kyutai-labs/moshi at OFFICIAL_COMMIT (models/compression.py, modules/*, quantization/*
identical; loaders.py differs by one typo in an error message).
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import torch

OFFICIAL_REPO = "https://github.com/kyutai-labs/moshi"
OFFICIAL_COMMIT = "e6a55d2722a65870ef52a6c9f6ecfc0e90f38362"  # moshi 0.2.13
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "mimi_moshi"
WEIGHTS = "tokenizer-tiny-checkpoint1.safetensors"
WEIGHT_NORM = "tokenizer-weightnorm.safetensors"
FRAME = 1920
QS = (1, 3, 8)


def tiny_config(norm: str) -> dict:
    seanet = dict(channels=1, dimension=32, causal=True, n_filters=2, n_residual_layers=1, activation="ELU",
                  compress=2, dilation_base=2, disable_norm_outer_blocks=0, kernel_size=7, residual_kernel_size=3,
                  last_kernel_size=3, norm=norm, pad_mode="constant", ratios=[8, 6, 5, 4], true_skip=True)
    transformer = dict(d_model=32, num_heads=4, num_layers=2, causal=True, layer_scale=0.01, context=6,
                       conv_layout=True, max_period=10000, gating="none", norm="layer_norm",
                       positional_embedding="rope", dim_feedforward=64, input_dimension=32, output_dimensions=[32])
    quantizer = dict(dimension=16, n_q=8, bins=64, input_dimension=32, output_dimension=32)
    return dict(sample_rate=24000, channels=1, frame_rate=12.5, seanet=seanet, quantizer=quantizer,
                transformer=transformer)


def stand_ins() -> None:
    """moshi/models/__init__ imports its loaders, which import the LM's text tokenizer and audio I/O packages."""
    sp = types.ModuleType("sentencepiece")
    sp.SentencePieceProcessor = object
    sys.modules.setdefault("sentencepiece", sp)
    for name in ("sphn", "sounddevice"):
        sys.modules.setdefault(name, types.ModuleType(name))


def randomise(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight_g"):  # weight norm starts at g = |v|: move it off
                p.mul_(0.5 + torch.rand(p.shape, generator=g))
            elif "norm1" in name or "norm2" in name or "layer_scale" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if name.endswith("norm1.weight")
                                                                   or name.endswith("norm2.weight") else 0.0))
        for name, b in model.named_buffers():
            if name.endswith("cluster_usage"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
            elif name.endswith("_initialized"):
                b.fill_(1.0)
        # codebooks drawn from the latents of other audio (as moshi's k-means init does), level by level, so
        # that every codebook of a random model splits real latents instead of mapping all to one entry
        calibration = (0.3 * torch.randn(2, 1, 40 * FRAME, generator=g)).clamp(-1, 1)
        emb = model._encode_to_unquantized_latent(calibration)
        for rvq in (model.quantizer.rvq_first, model.quantizer.rvq_rest):
            residual = rvq.input_proj(emb).transpose(1, 2).reshape(-1, rvq.dimension)
            for layer in rvq.vq.layers:
                book = layer._codebook
                rows = residual[torch.randint(len(residual), (book.codebook_size,), generator=g)]
                codes = rows + 0.1 * residual.std() * torch.randn(rows.shape, generator=g)
                book.embedding_sum.copy_(codes * book.cluster_usage[:, None])
                book._embedding = None
                residual = residual - codes[torch.cdist(residual, codes).argmin(-1)]


def release_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The spelling of the released file (what transformers' convert_mimi_checkpoint_to_pytorch.py reads):
    one fused `in_proj_weight` and `out_proj.weight` per attention."""
    out = {}
    for k, v in state.items():
        k = k.replace("self_attn.in_projs.0.weight", "self_attn.in_proj_weight")
        k = k.replace("self_attn.out_projs.0.weight", "self_attn.out_proj.weight")
        out[k] = v.contiguous()
    return out


def main() -> None:
    stand_ins()
    from moshi.models.loaders import get_mimi
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    trained = get_mimi(None, tiny_config("weight_norm"), num_codebooks=8)
    trained.eval()
    randomise(trained, seed=1)

    # the inference release: weight norm removed (torch's own remove_weight_norm), saved in the release's spelling
    plain = get_mimi(None, tiny_config("none"), num_codebooks=8)
    removed = get_mimi(None, tiny_config("weight_norm"), num_codebooks=8)
    removed.load_state_dict(trained.state_dict(), strict=True)
    for module in removed.modules():
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)
    folded = removed.state_dict()
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(release_layout(folded), str(OUT / WEIGHTS))
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(OUT / WEIGHT_NORM))
    plain.load_state_dict(load_file(str(OUT / WEIGHTS)), strict=True)  # the official loader takes the file
    plain.eval()
    (OUT / "mimi_config.json").write_text(json.dumps(tiny_config("none"), indent=1) + "\n")
    (OUT / "config.json").write_text(json.dumps({"mimi_name": WEIGHTS, "mimi_config_name": "mimi_config.json"},
                                                indent=1) + "\n")

    g = torch.Generator().manual_seed(2)
    frames = 10
    x = (0.3 * torch.randn(2, 1, frames * FRAME - 700, generator=g)).clamp(-1, 1)
    io = {"x": x}
    with torch.no_grad():
        for q in QS:
            plain.set_num_codebooks(q)
            codes = plain.encode(x)
            again = trained.encode(x) if q == 8 else None
            io[f"ids_{q}"] = codes
            io[f"audio_{q}"] = plain.decode(codes)
            if again is not None:
                assert torch.equal(again, codes), "weight norm and its folded weights code alike"
        padded = torch.nn.functional.pad(x, (0, frames * FRAME - x.shape[-1]))
        for step in (1, 2):
            with plain.streaming(2):
                io[f"stream_ids_{step}"] = torch.cat([plain.encode(padded[..., i:i + step * FRAME])
                                                      for i in range(0, padded.shape[-1], step * FRAME)], dim=-1)
        with plain.streaming(2):
            io["stream_audio_8"] = torch.cat([plain.decode(io["ids_8"][..., t:t + 1]) for t in range(frames)], dim=-1)
    for q in QS:
        assert len(io[f"ids_{q}"].unique()) > min(8, 2 * q), f"codes at q={q} barely vary"
    save_file({k: v.contiguous() for k, v in io.items()}, str(OUT / "io.safetensors"))
    print({k: tuple(v.shape) for k, v in io.items()})
    print("stream ids equal batch ids:", [torch.equal(io[f"stream_ids_{s}"], io["ids_8"]) for s in (1, 2)],
          "stream audio max diff:", float((io["stream_audio_8"] - io["audio_8"]).abs().max()))


if __name__ == "__main__":
    main()
