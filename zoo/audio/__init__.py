"""Audio tokenizers: `Codec`, our SEANet + residual-VQ neural codec at 16 kHz; `DAC`, the Descript Audio Codec
with its released 16/24/44.1 kHz weights; `EnCodec`, Meta's codec with its 24 kHz and 48 kHz releases;
`Mimi`, Kyutai's streaming speech codec (Moshi).

Names resolve lazily, so importing one family (e.g. zoo.audio.encodec) does not import the others'
dependencies (the Codec's vector-quantize-pytorch takes seconds to import).
"""

from importlib import import_module
from typing import Any

_WHERE = {"Codec": "zoo.audio.codec", "CodecConfig": "zoo.audio.codec", "DAC": "zoo.audio.dac",
          "DACConfig": "zoo.audio.dac", "EnCodec": "zoo.audio.encodec", "EncodecConfig": "zoo.audio.encodec",
          "Mimi": "zoo.audio.mimi", "MimiConfig": "zoo.audio.mimi"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'zoo.audio' has no attribute {name!r}")
    return getattr(import_module(_WHERE[name]), name)
