"""A tiny family for hub tests: one weight vector, and a "released" format (fake.json) it converts.

Importing this module registers the family "fake". Conversions are counted per process in
`Fake.conversions`, and across processes as lines appended to $FAKE_CONVERSIONS when that is set.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from zoo import hub

RELEASE_FILE = "fake.json"


@dataclass
class FakeConfig:
    dim: int = 4


class Fake(hub.Pretrained, nn.Module):
    family = "fake"
    config_class = FakeConfig
    conversions = 0

    def __init__(self, config: FakeConfig) -> None:
        super().__init__()
        if not 0 < config.dim <= 1024:
            raise ValueError(f"dim must lie in [1, 1024], got {config.dim}")
        self.config = config
        self.weight = nn.Parameter(torch.zeros(config.dim))

    @staticmethod
    def is_release(path: str | Path) -> bool:
        path = Path(path)
        file = path / RELEASE_FILE if path.is_dir() else path
        return file.name == RELEASE_FILE and file.is_file()

    @classmethod
    def from_release(cls, path: str | Path) -> "Fake":
        path = Path(path)
        data = json.loads((path / RELEASE_FILE if path.is_dir() else path).read_text())
        module = cls(FakeConfig(dim=len(data["weight"])))
        with torch.no_grad():
            module.weight.copy_(torch.tensor(data["weight"]))
        Fake.conversions += 1
        if os.environ.get("FAKE_CONVERSIONS"):
            with open(os.environ["FAKE_CONVERSIONS"], "a") as f:
                f.write(f"{path}\n")
        return module


def release_bytes(weight: list[float]) -> bytes:
    return json.dumps({"weight": weight}).encode()


hub.register_family(Fake)
