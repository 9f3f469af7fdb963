"""Video tokenizers: `LARP`, holistic tokens shaped by a learned autoregressive prior."""

from zoo.video.larp import LARP, LARPConfig

__all__ = ["LARP", "LARPConfig"]
