"""Make tests/fixtures/dac_official: the official DAC (descript-audio-codec) at a tiny config, in its release layout.

The release files (`weights_16khz.pth` etc.) are what the official `DAC.save` writes: a pickle
{state_dict (every convolution as weight_g / weight_v), metadata: {kwargs: the constructor's arguments}}. The
official package imports `audiotools` (descript-audiotools: a dozen heavy dependencies) and `argbind` at the top
of `dac/__init__.py`, though the model classes use neither at inference; so it cannot join our test
environment. This script imports the official `dac.model.dac.DAC` with minimal stand-ins for those two names
(`BaseModel` = nn.Module with the two class lists `dac/__init__.py` extends, `AudioSignal`, `STFTParams`,
`Accelerator`, `argbind.bind`: none is called by building, encoding or decoding), builds the model at random
init, randomises what init leaves regular (weight-norm g and v, biases, Snake alphas, codebooks), and records:

- `weights.pth`: {state_dict, metadata: {kwargs}}, exactly the release layout;
- `io.safetensors`: input audio (2, 1, S) with a partial last frame; for q in 1, 2, 4 the official codes
  (B, q, T) of `DAC.encode(padded input, n_quantizers=q)` and the decode of those codes (`quantizer.from_codes`
  then `DAC.decode`).

    pip download descript-audio-codec==1.0.0 --no-deps && unzip descript_audio_codec-1.0.0-py3-none-any.whl -d /tmp/dac
    PYTHONPATH=/tmp/dac python scripts/make_dac_official_fixture.py

descript-audio-codec 1.0.0 is the PyPI wheel of descriptinc/descript-audio-codec (sha256 of the wheel:
7ecd1883040613d143494f27f199c11c7053a8a7f9fd2120568c5a98db926e61).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "dac_official"
KWARGS = dict(encoder_dim=4, encoder_rates=[2, 4, 5], decoder_dim=32, decoder_rates=[5, 4, 2], n_codebooks=4,
              codebook_size=64, codebook_dim=4, sample_rate=16000)


def stand_ins() -> None:
    """The names the official package imports from audiotools and argbind, none used by the model at inference."""
    class BaseModel(nn.Module):
        INTERN: list[str] = []
        EXTERN: list[str] = []

    audiotools, ml, argbind = (types.ModuleType(n) for n in ("audiotools", "audiotools.ml", "argbind"))
    ml.BaseModel, ml.Accelerator = BaseModel, object
    audiotools.ml, audiotools.AudioSignal, audiotools.STFTParams = ml, object, object
    argbind.bind = lambda *args, **kwargs: (lambda f: f)
    sys.modules.update({"audiotools": audiotools, "audiotools.ml": ml, "argbind": argbind})


def main() -> None:
    stand_ins()
    from dac.model.dac import DAC

    torch.manual_seed(0)
    model = DAC(**KWARGS).eval()
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith("alpha"):
                p.uniform_(0.5, 1.5)
            elif key.endswith("bias"):
                p.normal_(0, 0.05)
            elif key.endswith("weight_g"):
                p.mul_(torch.empty_like(p).uniform_(0.5, 1.5))
            elif key.endswith("weight_v"):
                p.add_(0.05 * torch.randn_like(p))
            elif key.endswith("codebook.weight"):
                p.normal_(0, 1)
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "metadata": {"kwargs": KWARGS}}, OUT / "weights.pth")
    x = (0.5 * torch.randn(2, 1, 16000 // 4 * 3 + 17, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    record = {"audio": x}
    hop = 40  # 2 * 4 * 5
    with torch.no_grad():
        for q in (1, 2, 4):
            _, codes, *_ = model.encode(F.pad(x, (0, -x.shape[-1] % hop)), n_quantizers=q)
            codes = codes[:, :q]
            record[f"codes_{q}"] = codes.contiguous()
            record[f"decoded_{q}"] = model.decode(model.quantizer.from_codes(codes)[0]).contiguous()
    save_file(record, str(OUT / "io.safetensors"))
    print({k: tuple(v.shape) for k, v in record.items()})


if __name__ == "__main__":
    main()
