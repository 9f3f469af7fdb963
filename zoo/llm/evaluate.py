"""Measuring the demo LM: sample through its vocabulary, decode with the zoo tokenizers, and judge.

Shared by the LM recipe (which writes the numbers on the card), `benchmarks/llm.py` and the tests;
knows nothing of training (`recipes.lm.train_judge` trains the judge).

- actions: for every LASA training shape, sample trajectories from its name, decode with BEAST, and
  ask which demonstration (of all 24 shapes x 7) is nearest by DTW (and by MSE): the shape matches
  when that demonstration is of the named shape (chance 1/24);
- images: for val-seed captions, sample image tokens, decode with the image tokenizer, and ask a
  judge classifier (`ShapeJudge`, a small CNN trained on train-seed scenes and shipped beside the LM
  as judge.safetensors) for the main object's kind, colour and count; the image matches when all
  three agree with the caption. The same judge on the real images and on their tokenizer
  reconstructions gives the ceilings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from zoo.llm.model import MultimodalLM
from zoo.tokenizer import Tokenizer, Tokens

IMAGE, ACTION = "image", "action"  # the entry names of the demo LM's vocabulary
JUDGE = "judge.safetensors"


def seed_option(tokenizer: Tokenizer, seed: int) -> dict[str, int]:
    """{"seed": seed} for a flow decoder that takes one (FlexTok), {} for a deterministic one (KARL, CAT)."""
    return {"seed": seed} if "seed" in tokenizer.decode_options else {}


# ----------------------------------------------------------------------------------------- sampling and judging

def evaluate_actions(lm: MultimodalLM, beast: Any, demos: np.ndarray, names: list[str], *, samples: int = 4,
                     temperature: float = 1.0, seed: int = 0, dtw_steps: int = 50, scale: bool = True,
                     guidance: float = 1.0) -> dict[str, Any]:
    """Sample `samples` trajectories per shape name and find the nearest demonstration.

    Args:
        demos: (n, T, 2) every demonstration of the shapes (the reference set); names: their shapes.
        scale: also measure the demonstrations' own spread (each one's DTW to its nearest sibling).
        guidance: the classifier-free guidance scale of `MultimodalLM.generate`.
    Returns:
        metrics (accuracy by DTW and by MSE, mean DTW to the named shape's nearest demo and the
        same for a held-in demo, for scale) and "trajectories" (shapes x samples, T, 2), "prompts".
    """
    from zoo.metrics import dtw_distances

    shapes = sorted(set(names))
    prompts = [s for s in shapes for _ in range(samples)]
    segments = lm.generate(prompts, ACTION, temperature=temperature, seed=seed, guidance=guidance)
    complete = [s.complete for s in segments]
    tokens = Tokens(ids=torch.stack([s.ids for s in segments]), lengths=torch.tensor([len(s.ids) for s in segments]))
    gen = beast.decode(tokens, num_steps=demos.shape[1]).float()  # (P, T, 2)
    ref = torch.from_numpy(demos).float()
    names_arr = np.array(names)
    sub = np.linspace(0, demos.shape[1] - 1, dtw_steps).round().astype(int)
    p, n = len(gen), len(ref)
    dtw = dtw_distances(gen[:, sub].repeat_interleave(n, 0), ref[:, sub].repeat(p, 1, 1)).view(p, n)
    mse = (gen[:, None] - ref[None]).pow(2).mean((2, 3))  # (P, n)
    named = torch.from_numpy(names_arr[None, :] == np.array(prompts)[:, None])  # (P, n)
    by_dtw = names_arr[dtw.argmin(1).numpy()] == np.array(prompts)
    by_mse = names_arr[mse.argmin(1).numpy()] == np.array(prompts)
    dtw_named = dtw.masked_fill(~named, math.inf).min(1).values
    dtw_other = dtw.masked_fill(named, math.inf).min(1).values
    spread = {}
    if scale:  # each demonstration's DTW to the nearest other demonstration of its own shape
        own = torch.from_numpy(names_arr[:, None] == names_arr[None, :]) & ~torch.eye(n, dtype=torch.bool)
        dd = dtw_distances(ref[:, sub].repeat_interleave(n, 0), ref[:, sub].repeat(n, 1, 1)).view(n, n)
        spread["action_demo_to_demo_dtw_mm"] = float(dd.masked_fill(~own, math.inf).min(1).values.mean())
    return {
        "metrics": {
            "action_shape_match_dtw": float(by_dtw.mean()),
            "action_shape_match_mse": float(by_mse.mean()),
            "action_dtw_to_named_mm": float(dtw_named.mean()),
            "action_dtw_to_other_mm": float(dtw_other.mean()),
            **spread,
            "action_complete": float(np.mean(complete)),
            "action_prompts": len(prompts),
        },
        "trajectories": gen.view(len(shapes), samples, *gen.shape[1:]).numpy(),
        "shapes": shapes,
        "per_sample_match": by_dtw,
    }



def evaluate_images(lm: MultimodalLM, image_tok: Any, judge: Any, scenes: dict[str, np.ndarray], *, n: int = 128,
                    temperature: float = 1.0, seed: int = 0, decode_seed: int = 0, guidance: float = 1.0) -> dict[str, Any]:
    """Sample an image for each of the first `n` val captions, decode it, and ask the judge.

    Returns:
        metrics: image_match (kind, colour and count all right), per-head accuracies, the judge on
        the real images and on their tokenizer reconstructions (ceilings), and on generated images
        scored against another caption's labels (the chance level of an LM that ignores its caption);
        and "images" (n, 3, H, W), "captions".
    """
    from zoo.data.images import images_to_tensor

    e = lm.vocab.entry(IMAGE)
    captions = [str(c) for c in scenes["captions"][:n]]
    labels = {"kind": torch.from_numpy(scenes["label_kind"][:n]), "colour": torch.from_numpy(scenes["label_colour"][:n]),
              "count": torch.from_numpy(scenes["label_count"][:n]) + 1}
    segments = lm.generate(captions, IMAGE, temperature=temperature, seed=seed, guidance=guidance)
    ids = torch.stack([s.ids for s in segments])
    tokens = Tokens(ids=ids, lengths=torch.full((len(ids),), ids.shape[1]))
    with torch.no_grad():
        gen = image_tok.decode(tokens, **seed_option(image_tok, decode_seed)).clamp(0, 1)
        real = images_to_tensor(scenes["images"][:n])
        recon = reconstruct(image_tok, real, e.encode_kwargs or {"num_tokens": e.max_tokens}, seed=decode_seed)

    def score(images: Tensor, target: dict[str, Tensor]) -> dict[str, float]:
        pred = judge.predict(images)
        right = {h: pred[h].cpu() == target[h] for h in ("kind", "colour", "count")}
        return {**{h: float(r.float().mean()) for h, r in right.items()},
                "all": float(torch.stack(list(right.values())).all(0).float().mean())}

    shift = {h: v.roll(1) for h, v in labels.items()}
    g, r, c, s = score(gen, labels), score(real, labels), score(recon, labels), score(gen, shift)
    return {
        "metrics": {
            "image_match": g["all"], "image_kind": g["kind"], "image_colour": g["colour"], "image_count": g["count"],
            "judge_on_real": r["all"], "judge_on_reconstructions": c["all"], "image_match_wrong_caption": s["all"],
            "image_prompts": n,
        },
        "images": gen, "real": real, "recon": recon, "captions": captions,
    }



@torch.no_grad()
def reconstruct(tokenizer: Any, images: Tensor, encode_kwargs: dict[str, Any] | None = None,
                batch_size: int = 500, seed: int = 0) -> Tensor:
    """images: (B, 3, H, W) in [0, 1] → the tokenizer's reconstructions at the budget `encode_kwargs`.

    Flow decoders (FlexTok) get `seed`, so a reconstruction is reproducible; deterministic decoders
    (KARL, CAT) take none."""
    seeded = seed_option(tokenizer, seed)
    return torch.cat([tokenizer.decode(tokenizer.encode(images[i:i + batch_size], **(encode_kwargs or {})),
                                       **seeded).clamp(0, 1)
                      for i in range(0, len(images), batch_size)])



# ----------------------------------------------------------------------------------------- the judge


class ShapeJudge(torch.nn.Module):
    """A small CNN that names a shape scene's main object: kind, colour and count (the host ViT's API).

    Ours because the shared host ViT (`zoo.reduce.host`) was too weak on kinds when we needed it; it is
    trained by `train_judge` on train-seed scenes of the LM's levels and saved beside the LM (judge.safetensors).
    images: (B, 3, 32, 32) in [0, 1].
    """

    HEADS = {"kind": 5, "colour": 8, "count": 4}

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        layers: list[torch.nn.Module] = []
        for cin, cout in ((3, w), (w, 2 * w), (2 * w, 4 * w)):  # 32 -> 16 -> 8 -> 4
            layers += [torch.nn.Conv2d(cin, cout, 3, padding=1), torch.nn.BatchNorm2d(cout), torch.nn.GELU(),
                       torch.nn.Conv2d(cout, cout, 3, padding=1), torch.nn.BatchNorm2d(cout), torch.nn.GELU(),
                       torch.nn.MaxPool2d(2)]
        self.features = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(4 * w * 16, sum(self.HEADS.values()))

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        logits = self.head(self.features(images * 2 - 1).flatten(1))
        return dict(zip(self.HEADS, logits.split(list(self.HEADS.values()), dim=-1)))

    @torch.no_grad()
    def predict(self, images: Tensor) -> dict[str, Tensor]:
        """kind, colour: LongTensor [B]; count: LongTensor [B] in 1..4."""
        self.eval()
        out = {h: v.argmax(-1) for h, v in self(images.float()).items()}
        out["count"] = out["count"] + 1
        return out



def describe_judge(acc: dict[str, Any]) -> str:
    """'kind 94%, colour 97%, count 91%, all three 85% on 1000 val scenes of levels [0, 1]' (and on their
    reconstructions, when the judge was trained on reconstructions too)."""
    if not acc:
        return "not measured"
    text = (f"kind {acc['kind']:.0%}, colour {acc['colour']:.0%}, count {acc['count']:.0%}, all three {acc['all']:.0%} "
            f"on 1000 val scenes of levels {acc['levels']}")
    if "recon_all" in acc:
        text += (f"; trained on real scenes and on the image tokenizer's reconstructions of them at {acc['encode_kwargs']}, "
                 f"it gets all three right on {acc['recon_all']:.0%} of the val scenes' reconstructions")
    return text


def judge_accuracy(path: str | Path) -> dict[str, Any]:
    """The val accuracy `train_judge` stored in the judge file's metadata."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads((f.metadata() or {}).get("val_accuracy", "{}"))


def load_judge(path: str | Path | None = None) -> Any:
    """The judge of generated images: our ShapeJudge at `path` (beside the LM), else the shared host ViT."""
    if path is not None and Path(path).is_file():
        from safetensors.torch import load_file

        judge = ShapeJudge()
        judge.load_state_dict(load_file(str(path)), strict=True)
        return judge.eval()
    from zoo.reduce.host import load_host_classifier

    return load_host_classifier()


def measure(lm: MultimodalLM, *, action_samples: int = 4, image_prompts: int = 128, image_levels: Any = (0,),
            temperature: float = 1.0, seed: int = 0, judge: Any = None, scale: bool = True,
            guidance: float = 1.0) -> dict[str, Any]:
    """Every card number of the LM, from samples decoded by the tokenizers its vocabulary names.

    The protocol (these arguments) is stored in the card's summary, so a test can measure again.

    Args:
        judge: the image judge (`load_judge(...)`); default the shared host ViT.
        guidance: the classifier-free guidance scale every sample is drawn with (1.0: none).
    """
    from zoo.data.images import shape_scenes

    protocol = {"action_samples": action_samples, "image_prompts": image_prompts, "image_levels": list(image_levels),
                "temperature": temperature, "seed": seed, "guidance": guidance}
    out: dict[str, Any] = {"protocol": protocol}
    names = [e.name for e in lm.vocab.entries]
    if ACTION in names:
        from zoo.data.actions import load_lasa

        beast = lm.vocab.load_tokenizer(ACTION)
        x, shapes = load_lasa("train", beast.config.num_steps)
        out[ACTION] = evaluate_actions(lm, beast, x, shapes, samples=action_samples, temperature=temperature, seed=seed,
                                       scale=scale, guidance=guidance)
    if IMAGE in names:
        scenes = shape_scenes("val", image_prompts, image_levels)
        out[IMAGE] = evaluate_images(lm, lm.vocab.load_tokenizer(IMAGE), judge or load_judge(), scenes, n=image_prompts,
                                     temperature=temperature, seed=seed, guidance=guidance)
    return out
