"""Make tests/fixtures/larp_official: the official LARP tokenizer at a tiny config, in its release layout.

The official code (hywang66/LARP, MIT) is not pip-installable; this script imports its `models` package
from a checkout at OFFICIAL_COMMIT, builds `LARPTokenizer` at a tiny configuration shaped like the release
(cfgs/larp_tokenizer.yaml: full attention, stochastic L2-normalised VQ, fixed 3D sin-cos tables, a prior),
randomises every tensor that starts constant (biases, norms, the zero-initialised output layer, token-type
embeddings), and writes what PyTorchModelHubMixin publishes (config.json + model.safetensors) plus
`io.safetensors`: input clips in [0, 1], the official deterministic ids and the official decodes of
those ids. tests/test_larp.py converts it with `LARP.from_release` and requires identical ids and
decodes within 1e-5. All four token-type embeddings are switched on (the release uses one) so the
converter's folding of each is checked.

    git -C /path/to/LARP.git archive 8aaed63354c8c0fabcb8a86a2e31c34320e6db86 models ar | tar x -C /tmp/larp
    python scripts/make_larp_fixture.py --official /tmp/larp

Modules the tokenizer never uses at inference (lpips, the repo's `utils` with tensorboard/FVD, easydict)
are replaced by small stand-ins before the import; the tokenizer, its transformer, bottleneck and
embeddings are the official files as they are.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import torch

OFFICIAL_REPO = "https://github.com/hywang66/LARP"
OFFICIAL_COMMIT = "8aaed63354c8c0fabcb8a86a2e31c34320e6db86"
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "larp_official"


def stand_ins() -> None:
    class EasyDict(dict):
        def __getattr__(self, name):
            try:
                return self[name]
            except KeyError as e:
                raise AttributeError(name) from e

    sys.modules["easydict"] = types.SimpleNamespace(EasyDict=EasyDict)
    sys.modules["lpips"] = types.ModuleType("lpips")
    utils = types.ModuleType("utils")
    utils.compute_num_params = lambda model, text=False: sum(p.numel() for p in model.parameters())
    sys.modules["utils"] = utils


def tiny_args() -> dict:
    return dict(
        bottleneck=dict(name="bottleneck", args=dict(
            bottleneck_dim=8, norm="none",
            regularizer=dict(name="vq", args=dict(codebook_size=64, commitment_loss_weight=0.25, codebook_loss_weight=1.0,
                                                  entropy_loss_weight=0.0, entropy_loss_temperature=0.01,
                                                  l2_normalized=True, stochastic=True, stochastic_temperature=0.03)))),
        prior_model=dict(name="gptc-tiny", use_mix_ss=True, mix_ss_max_ratio=0.5, mix_ss_peak_steps_ratio=0.3, n_rounds=2,
                         avg_loss_over_rounds=True, no_grad_before_last_round=False, no_dropout=False,
                         latent_ce_temperature=1.0, args=dict(l2_normalized=True)),
        transformer_name="transformer_encoder_parallel", encoder_name="none", decoder_name="none",
        bottleneck_token_num=16, input_size=16, frame_num=8, temporal_patch_size=4, patch_size=4,
        decoder_temporal_patch_size=4, decoder_patch_size=4, in_channels=3,
        encoder_hidden_size=32, decoder_hidden_size=32, encoder_num_heads=2, decoder_num_heads=2,
        encoder_depth=2, decoder_depth=2,
        learned_encoder_patch_pe=False, learned_encoder_latent_query_embed=True, learned_decoder_latent_pe=False,
        learned_decoder_patch_query_embed=False,
        use_encoder_patch_token_type_embed=True, use_encoder_latent_query_token_type_embed=True,
        use_decoder_latent_token_type_embed=True, use_decoder_patch_query_token_type_embed=True,
        encoder_query_gaussian_init=True, latent_pe_scale_factor=10000, query_init_std=1.0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=Path, required=True, help=f"a checkout of {OFFICIAL_REPO} at {OFFICIAL_COMMIT[:7]}")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    stand_ins()
    sys.path.insert(0, str(args.official))
    import models  # the official package
    from models.gptc import GPTC, GPTCConfig
    from models.larp_tokenizer import LARPTokenizer

    # a tiny prior under its own name (gptc-S is 21.7 M); the converter must drop it whatever its size
    models.models["gptc-tiny"] = lambda **kw: GPTC(GPTCConfig(n_layer=1, n_head=2, n_embd=16, max_seq_len=16, **kw))

    torch.manual_seed(0)
    model = LARPTokenizer(**tiny_args())
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("prior_model.") and float(p.std()) == 0.0:  # constant at init: make it matter
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
        model.final_layer.linear.weight.normal_(0, 0.2, generator=g)
    model.eval()
    model.set_vq_eval_deterministic(True)

    noise = torch.rand(3, 3, 8, 16, 16, generator=g)
    videos = torch.stack([noise[0], noise[1] ** 4, (noise[2] * 0.2 + torch.linspace(0, 0.8, 16)).clamp(0, 1)])
    with torch.no_grad():
        ids = model.encode(videos)["bottleneck_rep"]  # (B, N) argmax of the SVQ softmax
        decoded = model.decode_from_bottleneck(ids)  # (B, 3, T, S, S), [0, 1] units, unclamped

    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)  # PyTorchModelHubMixin: config.json + model.safetensors
    from safetensors.torch import save_file

    save_file({"videos": videos, "ids": ids.long(), "decoded": decoded.contiguous()}, str(args.out / "io.safetensors"),
              metadata={"official_repo": OFFICIAL_REPO, "official_commit": OFFICIAL_COMMIT})
    (args.out / "SOURCE.json").write_text(json.dumps(
        {"official_repo": OFFICIAL_REPO, "official_commit": OFFICIAL_COMMIT, "script": "scripts/make_larp_fixture.py",
         "license": "MIT"}, indent=2) + "\n")
    sizes = {p.name: p.stat().st_size for p in args.out.iterdir()}
    print(f"wrote {args.out}: {sizes}; ids {ids.tolist()}")


if __name__ == "__main__":
    main()
