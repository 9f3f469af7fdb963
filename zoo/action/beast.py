"""BEAST: action chunks as B-spline control points, quantised into tokens.

Paper: "BEAST: Efficient Tokenization of B-Splines Encoded Action Sequences for Imitation Learning"
(Zhou et al., 2025, https://arxiv.org/abs/2506.06072). Official code: intuitive-robots/beast_calvin.

A trajectory x: (T, D) is fitted, per degree of freedom, by a clamped uniform B-spline of degree p
with N control points (ridge least squares; the solve matrix is cached per (T, N, p)). Gripper dims
may use a degree-0 spline (piecewise constant). Control points are normalised by per-(control point,
dof) bounds fitted once from data and stored in the checkpoint, then cut into `vocab_size` bins.
Tokens are ordered control-point-major with the DoFs interleaved: [c0d0, c0d1, ..., c1d0, ...].

What we do beyond the official code:
- any input length T (the basis is evaluated on the input's own time grid) and any output length;
- `num_tokens=` picks N at encode time (bounds are fitted for every N up to `max_control_points`);
- ids outside the vocabulary, or a token count that is not a whole number of control points, raise
  a ValueError on decode instead of decoding to a silent wrong trajectory;
- optional pinning of the first control point to the current pose (it is then not a token).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from zoo.hub import register_family
from zoo.tokenizer import (InputContract, Tokenizer, Tokens, TokenSpec, check_budget, check_fields, check_input,
                           check_tokens, check_weights)


@dataclass
class BEASTConfig:
    """Args:
        num_dof: D, degrees of freedom of an action.
        num_control_points: N per DoF used when `encode` is given no budget.
        max_control_points: largest N `num_tokens=` may ask for (bounds are fitted for each N).
        degree: p of the spline for the continuous dims.
        gripper_dims: dims fitted with a degree-0 (piecewise constant) spline.
        vocab_size: bins per control point.
        num_steps: default output length T when tokens do not record one.
        ridge: Tikhonov weight of the least-squares fit (keeps short inputs well posed).
        pin_start: pin the first control point to the first pose; it is then carried in
            `Tokens.meta["start"]` (the policy knows its pose) and not emitted as tokens.
        bound_margin: fraction of each fitted range added on both sides.
    """

    num_dof: int = 2
    num_control_points: int = 10
    max_control_points: int = 10
    degree: int = 4
    gripper_dims: tuple[int, ...] = ()
    vocab_size: int = 256
    num_steps: int = 100
    ridge: float = 1e-6
    pin_start: bool = False
    bound_margin: float = 0.02

    def __post_init__(self) -> None:
        self.gripper_dims = tuple(self.gripper_dims)
        check_fields(self, num_dof=(1, 1024), num_control_points=(1, 4096), max_control_points=(1, 4096), degree=(0, 32),
                     vocab_size=(2, 1 << 24), num_steps=(1, MAX_STEPS), ridge=(0, 1e6), bound_margin=(0, 10))
        if self.num_dof < 1:
            raise ValueError(f"num_dof must be >= 1, got {self.num_dof}")
        if self.degree < 0:
            raise ValueError(f"degree must be >= 0, got {self.degree}")
        low = self.min_control_points
        if not low <= self.num_control_points <= self.max_control_points:
            raise ValueError(
                f"need {low} <= num_control_points <= max_control_points (degree {self.degree} needs at least "
                f"{self.degree + 1}), got num_control_points={self.num_control_points}, max={self.max_control_points}"
            )
        bad = [d for d in self.gripper_dims if not 0 <= d < self.num_dof]
        if bad:
            raise ValueError(f"gripper_dims must index 0..{self.num_dof - 1}, got {bad}")
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {self.vocab_size}")

    @property
    def min_control_points(self) -> int:
        return self.degree + 1 + (1 if self.pin_start else 0)

    def tokens_for(self, n: int) -> int:
        """Tokens per trajectory with n control points per DoF."""
        return (n - self.pin_start) * self.num_dof


# ----------------------------------------------------------------------------------------- spline algebra


def clamped_knots(n: int, degree: int) -> np.ndarray:
    """Knot vector of a clamped uniform B-spline with n control points on [0, 1]."""
    inner = np.linspace(0.0, 1.0, n - degree + 1)
    return np.concatenate([np.zeros(degree), inner, np.ones(degree)])


@lru_cache(maxsize=256)
def basis(steps: int, n: int, degree: int) -> np.ndarray:
    """Design matrix Φ: (steps, n); row t holds the n basis functions at time t / (steps - 1)."""
    from scipy.interpolate import BSpline

    t = np.linspace(0.0, 1.0, steps) if steps > 1 else np.zeros(1)
    return BSpline.design_matrix(t, clamped_knots(n, degree), degree).toarray()


@lru_cache(maxsize=256)
def fit_matrix(steps: int, n: int, degree: int, ridge: float, pin: bool) -> np.ndarray:
    """S: (n - pin, steps), the ridge least-squares solve, so control points = S @ x.

    With `pin`, the first control point is fixed to x[0] and S solves for the others on the residual
    x - Φ[:, 0] x[0]; the caller adds that correction.
    """
    phi = basis(steps, n, degree)[:, int(pin):]
    gram = phi.T @ phi + ridge * np.eye(phi.shape[1])
    return np.linalg.solve(gram, phi.T)


MAX_STEPS = 1_000_000  # longest trajectory decode writes: 1e6 steps is hours of control at 100 Hz


def output_steps(tokens: Tokens, num_steps: int | None, default: int) -> int:
    """The length to decode to: `num_steps` if given, else the length the tokens were encoded from.

    Both are checked to lie in [1, MAX_STEPS] before anything is allocated (a token file is untrusted).
    """
    if num_steps is not None:
        return check_budget(num_steps, 1, MAX_STEPS, "num_steps")
    steps = tokens.meta.get("num_steps")
    if steps is None or steps.numel() == 0:
        return default
    if steps.shape != (tokens.batch_size,) or steps.is_floating_point() or steps.dtype == torch.bool:
        raise ValueError(f"tokens.meta['num_steps'] must be integers [B], got {steps.dtype} {tuple(steps.shape)}")
    if steps.numel() > 1 and bool((steps != steps[0]).any()):
        raise ValueError(f"tokens record different lengths {steps.unique().tolist()}; pass num_steps=")
    return check_budget(int(steps[0]), 1, MAX_STEPS, "tokens.meta['num_steps']")


# ----------------------------------------------------------------------------------------- the tokenizer


class BEAST(Tokenizer):
    """B-spline action tokenizer. x: (B, T, D) float → ids (B, N·D) in [0, vocab) or latents (B, N, D)."""

    family = "beast"
    config_class = BEASTConfig
    encode_knobs = ("num_tokens", "continuous")
    decode_options = ("num_steps",)

    def __init__(self, config: BEASTConfig) -> None:
        super().__init__(config)
        self.bounds: dict[int, np.ndarray] = {}  # N -> (2, N, D) low/high per control point and dof

    # -- fitted state ---------------------------------------------------------------------------------

    def fit(self, trajectories: Tensor | np.ndarray) -> "BEAST":
        """Fit per-(control point, dof) bounds, for every N, from a dataset of trajectories (B, T, D)."""
        x = check_input(trajectories, self.spec.input, "trajectories").double()
        c = self.config
        for n in range(c.min_control_points, c.max_control_points + 1):
            cps = self._control_points(x, n).numpy()  # (B, n, D)
            low, high = cps.min(0), cps.max(0)
            pad = c.bound_margin * (high - low) + 1e-6
            self.bounds[n] = np.stack([low - pad, high + pad])
        return self

    def extra_state(self) -> dict[str, Any]:
        return {"bounds": {str(n): b.tolist() for n, b in self.bounds.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        c = self.config
        bounds = {int(n): np.asarray(b, dtype=np.float64) for n, b in state.get("bounds", {}).items()}
        for n, b in bounds.items():
            if b.shape != (2, n, c.num_dof):
                raise ValueError(f"bounds for N={n} must have shape (2, {n}, {c.num_dof}), got {b.shape}")
        self.bounds = bounds

    def _bounds(self, n: int, like: Tensor) -> tuple[Tensor, Tensor]:
        if n not in self.bounds:
            fitted = sorted(self.bounds) or "none"
            raise ValueError(f"BEAST bounds are not fitted for N={n} control points (fitted: {fitted}); call fit(data)")
        b = torch.as_tensor(self.bounds[n], dtype=like.dtype, device=like.device)
        return b[0], b[1]

    # -- the contract ----------------------------------------------------------------------------------

    @property
    def spec(self) -> TokenSpec:
        c = self.config
        return TokenSpec(
            modality="action",
            vocab_size=c.vocab_size,
            num_codebooks=1,
            max_tokens=c.tokens_for(c.max_control_points),
            latent_dim=c.num_dof,
            input=InputContract(layout="B T D", sizes={"D": c.num_dof}),
        )

    # -- encode / decode -------------------------------------------------------------------------------

    def _groups(self) -> list[tuple[list[int], int]]:
        """(dims, degree) pairs: the continuous dims with degree p, the gripper dims with degree 0."""
        c = self.config
        smooth = [d for d in range(c.num_dof) if d not in c.gripper_dims]
        return [(dims, p) for dims, p in ((smooth, c.degree), (list(c.gripper_dims), 0)) if dims]

    def _control_points(self, x: Tensor, n: int) -> Tensor:
        """x: (B, T, D) → control points (B, n, D), least squares per dof, first one pinned if asked."""
        c = self.config
        steps = x.shape[1]
        out = x.new_empty(x.shape[0], n, c.num_dof)
        for dims, p in self._groups():
            xs = x[..., dims]
            s = torch.as_tensor(fit_matrix(steps, n, p, c.ridge, c.pin_start), dtype=x.dtype, device=x.device)
            if c.pin_start:
                phi0 = torch.as_tensor(basis(steps, n, p)[:, 0], dtype=x.dtype, device=x.device)
                start = xs[:, 0]  # (B, d)
                rest = torch.einsum("nt,btd->bnd", s, xs - phi0[None, :, None] * start[:, None])
                out[..., dims] = torch.cat([start[:, None], rest], dim=1)
            else:
                out[..., dims] = torch.einsum("nt,btd->bnd", s, xs)
        return out

    def _curve(self, cps: Tensor, steps: int) -> Tensor:
        """Control points (B, n, D) → trajectory (B, steps, D)."""
        n = cps.shape[1]
        out = cps.new_empty(cps.shape[0], steps, cps.shape[2])
        for dims, p in self._groups():
            phi = torch.as_tensor(basis(steps, n, p), dtype=cps.dtype, device=cps.device)
            out[..., dims] = torch.einsum("tn,bnd->btd", phi, cps[..., dims])
        return out

    @torch.no_grad()
    def encode(self, x: Tensor, *, num_tokens: int | None = None, continuous: bool = False) -> Tokens:
        """Encode trajectories.

        Args:
            x: (B, T, D) float, any T >= 1.
            num_tokens: tokens per trajectory, N·D (or (N-1)·D when pinned); default N from the config.
            continuous: return normalised control points as `latents` (B, N', D) in [-1, 1] instead of ids.
        Returns:
            Tokens with ids (B, N'·D) or latents (B, N', D); meta["num_steps"] = T (and "start" when pinned).
        """
        c = self.config
        x = check_input(x, self.spec.input, "actions")
        n = self._n_from_budget(num_tokens)
        low, high = self._bounds(n, x)
        cps = self._control_points(x, n)
        z = (cps - low) / (high - low) * 2 - 1  # (B, n, D) in [-1, 1] for data like the fitted set
        over = float(z.abs().max())
        if over > 1.05:
            warnings.warn(f"control points fall {over - 1:.0%} outside the fitted bounds and are clipped; refit BEAST on data like this", stacklevel=3)
        z = z.clamp(-1, 1)[:, int(c.pin_start):]
        b = x.shape[0]
        meta = {"num_steps": torch.full((b,), x.shape[1], dtype=torch.long, device=x.device)}
        if c.pin_start:
            meta["start"] = x[:, 0]
        if continuous:
            return Tokens(ids=None, lengths=torch.full((b,), z.shape[1], device=x.device), latents=z, meta=meta)
        ids = torch.round((z + 1) / 2 * (c.vocab_size - 1)).long()
        ids = rearrange(ids, "b n d -> b (n d)")  # control-point-major, dofs interleaved
        return Tokens(ids=ids, lengths=torch.full((b,), ids.shape[1], device=x.device), meta=meta)

    def _n_from_budget(self, num_tokens: int | None) -> int:
        c = self.config
        if num_tokens is None:
            return c.num_control_points
        low, high = c.tokens_for(c.min_control_points), c.tokens_for(c.max_control_points)
        num_tokens = check_budget(num_tokens, low, high)
        if num_tokens % c.num_dof:
            raise ValueError(f"num_tokens must be a multiple of num_dof={c.num_dof} (one token per control point and dof), got {num_tokens}")
        return num_tokens // c.num_dof + c.pin_start

    @torch.no_grad()
    def decode(self, tokens: Tokens, *, num_steps: int | None = None) -> Tensor:
        """Tokens → trajectories (B, T, D), T = `num_steps` or the encoded length recorded in the tokens."""
        c = self.config
        steps = output_steps(tokens, num_steps, c.num_steps)
        check_tokens(tokens, self.spec)
        if tokens.ids is None:
            z, lengths = tokens.latents, tokens.lengths
            if z.shape[-1] != c.num_dof:
                raise ValueError(f"latents must be (B, N, {c.num_dof}), got {tuple(z.shape)}")
        else:
            bad = tokens.lengths % c.num_dof
            if bool(bad.any()):
                raise ValueError(f"token counts must be multiples of num_dof={c.num_dof}, got lengths {tokens.lengths.tolist()}")
            lengths = tokens.lengths // c.num_dof
            z = rearrange(tokens.ids[:, : int(lengths.max()) * c.num_dof], "b (n d) -> b n d", d=c.num_dof)
            z = z.float() / (c.vocab_size - 1) * 2 - 1
        device = z.device
        out = torch.empty(tokens.batch_size, steps, c.num_dof, device=device)
        for m in lengths.unique().tolist():  # samples may carry different N: decode each group
            rows = (lengths == m).nonzero().squeeze(1)
            n = m + c.pin_start
            if not c.min_control_points <= n <= c.max_control_points:
                raise ValueError(f"{m} control points per dof is outside this tokenizer's range "
                                 f"{c.min_control_points - c.pin_start}..{c.max_control_points - c.pin_start}")
            low, high = self._bounds(n, z.float())
            low, high = low[c.pin_start:], high[c.pin_start:]
            cps = (z[rows, :m].float() + 1) / 2 * (high - low) + low  # (b, m, D)
            if c.pin_start:
                start = tokens.meta.get("start")
                if start is None or start.shape != (tokens.batch_size, c.num_dof) or not start.is_floating_point() \
                        or not bool(torch.isfinite(start).all()):
                    raise ValueError(f"this BEAST pins the start pose: tokens need finite meta['start'] "
                                     f"({tokens.batch_size}, {c.num_dof}), got {None if start is None else tuple(start.shape)}")
                cps = torch.cat([tokens.meta["start"][rows].float()[:, None], cps], dim=1)
            out[rows] = self._curve(cps, steps)
        return out

    def bits_per_trajectory(self, num_tokens: int | None = None) -> float:
        n = self._n_from_budget(num_tokens)
        return self.config.tokens_for(n) * math.log2(self.config.vocab_size)


# ----------------------------------------------------------------------------------------- registration

register_family(BEAST)
