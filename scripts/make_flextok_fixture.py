"""Build the official FlexTok at a tiny configuration, random init, and save it as a release fixture.

    python scripts/make_flextok_fixture.py /path/to/ml-flextok [OUT]

The official code is github.com/apple/ml-flextok at commit 87d00cc8babf4a25ffce0f3f0c4d8b529d3d6abf
("Added option to fall back to standard PyTorch SDPA instead of flex_attention"); it needs
`pip install hydra-core mup diffusers`. It runs here on CPU with its SDPA fallback
(use_flex_attention=False, packers returning materialised masks).

What it writes to OUT (default tests/fixtures/flextok_release):
- `config.json`: the Hydra `_target_` tree, as `FlexTokFromHub.save_pretrained` stores it;
- `model.safetensors`: the official state dict without the VAE (official key names);
- `vae/`: the VAE as `diffusers.AutoencoderKL.save_pretrained` writes it (its own repo upstream);
- `io.safetensors`: inputs and official outputs: `images` (B, 3, S, S) in [-1, 1], `latents` (the VAE mode,
  scaled), `ids` (B, K) from `tokenize`, and for one decoder call at fixed noise `noise`, time `t` and
  kept lengths `keep_k`: `velocity_cond`, `velocity_uncond` (the learned null condition), and
  `detok_apg` (3 Euler steps with guidance 2.5 and adaptive projected guidance from the same noise,
  before the VAE decoder) and `detok_images` (after it).

Every tensor that is zero (or one) at init (adaLN tables, heads, biases) is randomised so it matters.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "87d00cc8babf4a25ffce0f3f0c4d8b529d3d6abf"

# tiny shape: 32 px images, an f4 VAE with 4 latent channels → an 8x8 latent grid, patch 2 → 16 patches
IMAGE, F, C, P, K = 32, 4, 4, 2, 8
ENC_DIM, DEC_DIM, HEAD_DIM, ENC_DEPTH, DEC_DEPTH = 64, 64, 32, 2, 2
LEVELS = [8, 8, 8, 5, 5, 5]
GRID = IMAGE // F // P


def tree(vae_dir: str, C: int = C, P: int = P, K: int = K, ENC_DIM: int = ENC_DIM, DEC_DIM: int = DEC_DIM,
         HEAD_DIM: int = HEAD_DIM, ENC_DEPTH: int = ENC_DEPTH, DEC_DEPTH: int = DEC_DEPTH, GRID: int = GRID,
         flex: bool = False) -> dict:
    """The Hydra tree in the layout of the released configs (module names and keys as in the release).

    The defaults are the fixture's tiny shape; `flex=True` keeps the official fast path (flex_attention block
    masks) instead of the materialised masks its SDPA fallback needs (benchmarks/flextok.py times both).
    """
    packer = "flextok.model.preprocessors.flex_seq_packing.BlockWiseSequencePacker"
    transformer = "flextok.model.trunks.transformers.FlexTransformer"
    to_last = {"_target_": "flextok.model.utils.dict_ops.channels_first_to_last", "_partial_": True}
    to_first = {"_target_": "flextok.model.utils.dict_ops.channels_last_to_first", "_partial_": True}
    return {
        "vae": {"_target_": "flextok.vae_wrapper.StableDiffusionVAE", "images_read_key": "rgb",
                "vae_latents_read_key": "vae_latents", "vae_latents_write_key": "vae_latents",
                "images_reconst_write_key": "rgb_reconst", "vae_kl_loss_write_key": "kl_loss",
                "latent_channels": C, "scaling_factor": 0.7, "hf_hub_path": vae_dir, "sample_posterior": False,
                "frozen": True},
        "encoder": {"_target_": "flextok.model.utils.wrappers.SequentialModuleDictWrapper", "module_dict": {
            "enc_channels_to_last": {"_target_": "flextok.model.utils.dict_ops.PerSampleOp", "read_key": "vae_latents",
                                     "write_key": "vae_latents_bhwc", "per_sample_op": to_last},
            "enc_patch_emb": {"_target_": "flextok.model.preprocessors.patching.PatchEmbedder",
                              "input_tensor_list_read_key": "vae_latents_bhwc", "patches_list_write_key": "enc_patches",
                              "n_patches_write_key": "enc_n_patches", "channels_in": C, "dim": ENC_DIM,
                              "patch_sizes": [P, P], "flatten_patches": False},
            "enc_posemb_module": {"_target_": "flextok.model.utils.posembs.PositionalEmbeddingAdder",
                                  "read_key": "enc_patches", "write_key": "enc_patches", "dim": ENC_DIM,
                                  "max_sizes": [GRID, GRID], "posemb_type": "sincos", "posemb_scaling": "absolute"},
            "enc_register_module": {"_target_": "flextok.model.preprocessors.registers.Registers1D",
                                    "input_tensor_list_read_key": "enc_patches", "register_sizes_read_write_key": "register_sizes",
                                    "registers_write_key": "enc_registers", "dim": ENC_DIM, "n_min": K, "n_max": K,
                                    "size_sampling_mode": "uniform", "ordering_mode": "nested"},
            "enc_seq_packer": {"_target_": packer, "input_list_read_keys": ["enc_patches", "enc_registers"],
                               "packed_seq_write_key": "enc_packed_seq", "block_mask_write_key": "enc_block_mask",
                               "inner_packed_shapes_write_key": "enc_ps_inner", "outer_packed_shapes_write_key": "enc_ps_outer",
                               "mask_mode": "causal_last", "pad_to_multiple": 128, "return_materialized_mask": not flex},
            "enc_transformer": {"_target_": transformer, "input_seq_read_key": "enc_packed_seq",
                                "output_seq_write_key": "enc_packed_seq", "dim": ENC_DIM, "depth": ENC_DEPTH,
                                "head_dim": HEAD_DIM, "block_mask_read_key": "enc_block_mask"},
            "enc_unpacker": {"_target_": "flextok.model.postprocessors.seq_unpacking.SequenceUnpacker",
                             "packed_seq_read_key": "enc_packed_seq", "inner_seq_write_keys": ["enc_patches", "enc_registers"],
                             "inner_packed_shapes_read_key": "enc_ps_inner", "outer_packed_shapes_read_key": "enc_ps_outer"},
            "enc_to_latents": {"_target_": "flextok.model.postprocessors.heads.LinearHead", "read_key": "enc_registers",
                               "write_key": "enc_registers", "dim": ENC_DIM, "dim_out": len(LEVELS),
                               "use_mup_readout": False, "weight_init_style": "zero"},
        }},
        "regularizer": {"_target_": "flextok.regularizers.quantize_fsq.FSQ", "latents_read_key": "enc_registers",
                        "quants_write_key": "dec_quants", "tokens_write_key": "tokens", "levels": LEVELS},
        "decoder": {"_target_": "flextok.model.utils.wrappers.SequentialModuleDictWrapper", "module_dict": {
            "dec_from_latents": {"_target_": "flextok.model.preprocessors.linear.LinearLayer", "read_key": "dec_quants",
                                 "write_key": "dec_registers", "dim_in": len(LEVELS), "dim": DEC_DIM},
            "dec_registers_posemb_module": {"_target_": "flextok.model.utils.posembs.PositionalEmbeddingAdder",
                                            "read_key": "dec_registers", "write_key": "dec_registers", "dim": DEC_DIM,
                                            "max_sizes": [K], "posemb_type": "learnable_sum", "posemb_scaling": "absolute"},
            "dec_nested_dropout": {"_target_": "flextok.model.preprocessors.token_dropout.MaskedNestedDropout",
                                   "read_write_key": "dec_registers", "dim": DEC_DIM, "eval_keep_k_read_key": "eval_keep_k",
                                   "train_keep_k_write_key": "train_keep_k", "size_sampling_mode": "uniform"},
            "dec_latent_dropout": {"_target_": "flextok.model.preprocessors.nullcond.LearnedNullCond",
                                   "read_write_key": "dec_registers", "dim": DEC_DIM, "dropout_prob": 0.2,
                                   "eval_drop_flag_read_key": "eval_dropout_mask"},
            "dec_noise_channels_to_last": {"_target_": "flextok.model.utils.dict_ops.PerSampleOp", "read_key": "vae_latents_noised",
                                           "write_key": "vae_latents_noised_bhwc", "per_sample_op": to_last},
            "dec_noise_patch_emb": {"_target_": "flextok.model.preprocessors.patching.PatchEmbedder",
                                    "input_tensor_list_read_key": "vae_latents_noised_bhwc", "patches_list_write_key": "dec_patches",
                                    "n_patches_write_key": "dec_n_patches", "channels_in": C, "dim": DEC_DIM,
                                    "patch_sizes": [P, P], "flatten_patches": False},
            "dec_patches_posemb_module": {"_target_": "flextok.model.utils.posembs.PositionalEmbeddingAdder",
                                          "read_key": "dec_patches", "write_key": "dec_patches", "dim": DEC_DIM,
                                          "max_sizes": [GRID, GRID], "posemb_type": "sincos", "posemb_scaling": "absolute"},
            "dec_seq_packer": {"_target_": packer, "input_list_read_keys": ["dec_patches", "dec_registers"],
                               "packed_seq_write_key": "dec_packed_seq", "block_mask_write_key": "dec_block_mask",
                               "inner_packed_shapes_write_key": "dec_ps_inner", "outer_packed_shapes_write_key": "dec_ps_outer",
                               "mask_mode": "full", "pad_to_multiple": 128, "emb_packing_fn_write_key": "emb_packing_fn",
                               "per_subseq_embs": True, "return_materialized_mask": not flex},
            "dec_time_embedder": {"_target_": "flextok.model.preprocessors.time_embedding.TimestepEmbedder",
                                  "timesteps_read_key": "timesteps", "time_embedding_write_key": "dec_temb", "dim": DEC_DIM,
                                  "frequency_embedding_size": 256, "max_timestep": 1.0},
            "dec_transformer": {"_target_": transformer, "input_seq_read_key": "dec_packed_seq",
                                "output_seq_write_key": "dec_packed_seq", "dim": DEC_DIM, "depth": DEC_DEPTH,
                                "head_dim": HEAD_DIM, "block_mask_read_key": "dec_block_mask",
                                "adaLN_emb_read_key": "dec_temb", "adaLN_packing_fn_read_key": "emb_packing_fn",
                                "adaLN_expansion": 2},
            "dec_unpacker": {"_target_": "flextok.model.postprocessors.seq_unpacking.SequenceUnpacker",
                             "packed_seq_read_key": "dec_packed_seq", "inner_seq_write_keys": ["dec_patches", "dec_registers"],
                             "inner_packed_shapes_read_key": "dec_ps_inner", "outer_packed_shapes_read_key": "dec_ps_outer"},
            "dec_to_patches": {"_target_": "flextok.model.postprocessors.heads.ToPatchesLinearHead", "read_key": "dec_patches",
                               "write_key": "vae_latents_reconst", "dim": DEC_DIM, "channels_out": C, "patch_sizes": [P, P],
                               "use_mup_readout": False, "weight_init_style": "zero", "adaLN_emb_read_key": "dec_temb"},
            "dec_channels_to_first": {"_target_": "flextok.model.utils.dict_ops.PerSampleOp", "read_key": "vae_latents_reconst",
                                      "write_key": "vae_latents_reconst", "per_sample_op": to_first},
        }},
        "flow_matching_noise_module": {"_target_": "flextok.flow_matching.noise_modules.MinRFNoiseModule",
                                       "clean_images_read_key": "vae_latents", "noised_images_write_key": "vae_latents_noised",
                                       "timesteps_write_key": "timesteps", "sigmas_write_key": "sigmas"},
        "pipeline": {"_target_": "flextok.flow_matching.pipelines.MinRFPipeline", "_partial_": True,
                     "noise_read_key": "flow_noise", "target_sizes_read_key": "vae_latents_sizes",
                     "latents_read_key": "dec_quants", "timesteps_read_key": "timesteps",
                     "noised_images_read_key": "vae_latents_noised", "reconst_write_key": "vae_latents_reconst",
                     "out_channels": C},
    }


def use_sdpa(model: torch.nn.Module) -> None:
    """The official SDPA fallback, switched on in every attention module (its config has no such knob)."""
    for m in model.modules():
        if hasattr(m, "use_flex_attention"):
            m.use_flex_attention = False


def main(official: Path, out: Path) -> None:
    sys.path.insert(0, str(official))
    from diffusers import AutoencoderKL
    from hydra.utils import instantiate
    from safetensors.torch import save_file

    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    vae_dir = out / "vae"
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=C, block_out_channels=[8, 16, 16],
                        down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
                        layers_per_block=1, norm_num_groups=4, sample_size=IMAGE, scaling_factor=0.7)
    with torch.no_grad():
        for p in vae.parameters():  # GroupNorm affines and biases start at 1/0: make them matter
            p.add_(torch.randn_like(p) * 0.05)
    vae.save_pretrained(vae_dir, safe_serialization=True)

    config = tree(str(vae_dir))
    from flextok.flextok_wrapper import FlexTokFromHub

    model = FlexTokFromHub(copy.deepcopy(config)).eval()
    use_sdpa(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("vae.") or "posemb_module.posembs" in name and p.dim() == 4:
                continue  # the VAE came randomised; the sin-cos tables are fixed
            p.add_(torch.randn_like(p) * (0.3 if p.dim() == 1 else 0.1))

    g = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, IMAGE, IMAGE, generator=g) * 2 - 1
    with torch.no_grad():
        ids = torch.cat(model.tokenize(images))  # (B, K)
        latents = model.vae.encode({"rgb": images})["vae_latents"]
        # one decoder call: kept k per image, fixed noise, one time
        keep_k = [3, K]
        quants = [model.regularizer.indices_to_embedding(i[None]) for i in ids]
        noise = torch.randn(2, C, IMAGE // F, IMAGE // F, generator=g)
        t = torch.tensor([0.7, 0.3])
        out_dict = {}
        for cond in (True, False):
            d = {"dec_quants": [q.clone() for q in quants], "eval_keep_k": keep_k, "timesteps": t,
                 "vae_latents_noised": list(noise.split(1))}
            if not cond:
                d["eval_dropout_mask"] = [True, True]
            out_dict["velocity_cond" if cond else "velocity_uncond"] = torch.cat(model.decoder(d)["vae_latents_reconst"])
        # the whole sampler: 3 Euler steps, guidance 2.5 with APG, from the same noise
        d = {"dec_quants": [q.clone() for q in quants], "eval_keep_k": keep_k, "flow_noise": list(noise.split(1))}
        d = model.pipeline(d, timesteps=3, vae_image_sizes=IMAGE // F, verbose=False, guidance_scale=2.5,
                           perform_norm_guidance=True)
        detok = torch.cat(d["vae_latents_reconst"])
        detok_images = model.vae.decode({"vae_latents": detok})["rgb_reconst"]

    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("vae.")}
    save_file(state, str(out / "model.safetensors"))
    # as released, the tree names the VAE's hub repo (the converter finds the VAE in vae/ beside it)
    (out / "config.json").write_text(json.dumps(tree("EPFL-VILAB/flextok_vae_c16"), indent=1) + "\n")
    io = {"images": images, "latents": latents, "ids": ids, "noise": noise, "t": t,
          "keep_k": torch.tensor(keep_k), **out_dict, "detok_apg": detok, "detok_images": detok_images}
    save_file({k: v.contiguous() for k, v in io.items()}, str(out / "io.safetensors"),
              metadata={"official_commit": COMMIT})
    n = sum(p.numel() for n_, p in model.named_parameters() if not n_.startswith("vae."))
    print(f"wrote {out}: {n} non-VAE parameters, ids {ids.tolist()}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "tests" / "fixtures" / "flextok_release")
