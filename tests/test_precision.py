"""Every shipped tokenizer in float32, bfloat16 and float16 (issue 20 item 2), and device mismatches.

- Under `torch.autocast` a tokenizer runs at its own dtype (the base class switches autocast off inside
  encode/decode), so ids, lengths and outputs are exactly those of float32.
- Cast with `.to(dtype)` it computes in that dtype (autocast at the weights' dtype inside), so ids may differ
  where a value sits on a quantizer's rounding boundary. The tolerance, per tokenizer, is in `CAST_TOLERANCE`
  (documented in README "Precision"): the share of ids equal to float32's (over positions both emit), the mean
  |length difference| (adaptive tokenizers: KARL's halting head sees a slightly different image), and the PSNR
  of the half decode against the float32 decode.
"""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.metrics import psnr

# name -> (min share of equal ids, max mean |length difference|, min PSNR dB of the half decode vs the float32 decode)
CAST_TOLERANCE = {
    "flextok-tiny-nat32": (0.9, 0.0, 25.0),
    "karl-tiny-nat32": (0.5, 2.0, 18.0),
    "cat-tiny-nat32": (0.9, 8.0, 20.0),  # ratio="auto": the estimator may pick the next ratio for an image near a threshold
    "larp-tiny-motion32": (0.9, 0.0, 25.0),
    "codec-small-speech16k": (0.8, 0.0, 20.0),
    "beast-lasa": (0.8, 0.0, None),
}


def held_out(tok: zoo.Tokenizer) -> torch.Tensor:
    """A small held-out batch of the tokenizer's modality (val split, never trained on)."""
    modality = tok.spec.modality
    if modality == "image":
        from zoo.data.images import images_to_tensor, real_photo_crops, source_val_sets

        sets = source_val_sets(4)
        return torch.cat([images_to_tensor(real_photo_crops(4)["images"]), images_to_tensor(sets["flat"]["images"]),
                          images_to_tensor(sets["faces"]["images"])])
    if modality == "video":
        from zoo.data.video import val_clips, videos_to_tensor

        return videos_to_tensor(val_clips(2)["videos"])
    if modality == "audio":
        from zoo.data.audio import build_audio_dataset, have_audio_tools

        if not have_audio_tools("speech"):
            pytest.skip("espeak-ng is not installed")
        return torch.from_numpy(build_audio_dataset("speech", "val", 2, clip_seconds=1.0)["audio"][:, None]).float()
    from zoo.data.actions import load_lasa

    return torch.from_numpy(load_lasa("val")[0][:4]).float()


@pytest.fixture(scope="module", params=sorted(CAST_TOLERANCE))
def reference(request):
    tok = zoo.load(request.param)
    x = held_out(tok)
    tokens = tok.encode(x)
    return request.param, x, tokens, tok.decode(tokens)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_gives_float32_ids_exactly(reference, dtype):
    name, x, ref, y = reference
    tok = zoo.load(name)
    with torch.autocast("cpu", dtype=dtype):
        tokens = tok.encode(x)
        out = tok.decode(tokens)
    assert torch.equal(tokens.lengths, ref.lengths)
    if ref.ids is not None:
        assert torch.equal(tokens.ids, ref.ids)
    assert out.dtype == y.dtype and torch.equal(out, y)


def agreement(tokens, ref) -> tuple[float, float]:
    """(share of equal ids over positions valid in both, mean |length difference|)."""
    dl = (tokens.lengths - ref.lengths).abs().float().mean().item()
    if ref.ids is None:
        return 1.0, dl
    width = min(tokens.ids.shape[1], ref.ids.shape[1])
    both = (torch.arange(width)[None] < torch.minimum(tokens.lengths, ref.lengths)[:, None])
    same = (tokens.ids[:, :width] == ref.ids[:, :width])
    if same.ndim == 3:  # codebooks
        same, both = same.float().mean(-1), both
    return float(same.float()[both].mean()), dl


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cast_model_stays_within_its_tolerance(reference, dtype):
    name, x, ref, y = reference
    tok = zoo.load(name).to(dtype)
    assert tok.dtype == dtype or tok.spec.modality == "action"
    tokens = tok.encode(x)  # a float32 input is cast to the model's dtype at the door
    out = tok.decode(tokens)
    assert out.dtype == dtype or tok.spec.modality == "action", (name, out.dtype)  # the weights' dtype
    share, dl = agreement(tokens, ref)
    min_share, max_dl, min_psnr = CAST_TOLERANCE[name]
    assert share >= min_share, (name, dtype, share)
    assert dl <= max_dl, (name, dtype, dl)
    assert torch.isfinite(out.float()).all()
    if min_psnr is not None:
        lo, hi = tok.spec.input.value_range
        scale = lambda v: (v.float() - lo) / (hi - lo)  # noqa: E731
        assert float(psnr(scale(out), scale(y)).mean()) >= min_psnr, name


def test_input_on_another_device_is_a_value_error():
    tok = zoo.load("flextok-tiny-nat32").to("meta")  # a CPU input to a tokenizer elsewhere (CUDA on a GPU machine)
    with pytest.raises(ValueError, match="the input is on cpu, this tokenizer on meta"):
        tok.encode(torch.rand(1, 3, 32, 32))
