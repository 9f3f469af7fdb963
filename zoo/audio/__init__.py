"""Audio tokenizers: `Codec`, a SEANet + residual-VQ neural codec at 16 kHz."""

from zoo.audio.codec import Codec, CodecConfig

__all__ = ["Codec", "CodecConfig"]
