"""Record the ids the shipped `flextok-tiny-nat32` gives on fixed inputs, so speed work cannot change them.

    python scripts/make_flextok_ids_fixture.py     # writes tests/fixtures/flextok_tiny_nat32_ids.safetensors

Inputs: 8 images from `mixed_val_set(16)` and 8 seeded uniform-noise images; ids of a full encode (K = 64).
Images are stored as 8-bit pixels; the ids are those of pixels / 255.
"""

from pathlib import Path

import torch
from safetensors.torch import save_file

from zoo import hub
from zoo.data.images import images_to_tensor, mixed_val_set

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "flextok_tiny_nat32_ids.safetensors"

if __name__ == "__main__":
    tok = hub.load("flextok-tiny-nat32")
    images = torch.cat([images_to_tensor(mixed_val_set(16)["images"][:8]),
                        torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))])
    pixels = (images * 255).round().to(torch.uint8)  # stored as 8-bit; the ids are those of pixels / 255
    save_file({"pixels": pixels.contiguous(), "ids": tok.encode(pixels.float() / 255).ids.contiguous()}, str(OUT))
    print(f"wrote {OUT}")
