"""Audio tokenizers: `Codec`, our SEANet + residual-VQ neural codec at 16 kHz, and `DAC`, the Descript Audio
Codec with its released 16/24/44.1 kHz weights."""

from zoo.audio.codec import Codec, CodecConfig
from zoo.audio.dac import DAC, DACConfig

__all__ = ["Codec", "CodecConfig", "DAC", "DACConfig"]
