"""Lightning callbacks used by the multi-process and resume tests (named by class_path in their configs)."""

import os
import signal
from pathlib import Path

import lightning.pytorch as pl
from safetensors.torch import save_file


class DumpWeights(pl.Callback):
    """At the end of fit, every rank writes its weights to `directory/rank{r}.safetensors`."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in pl_module.state_dict().items()}
        save_file(state, str(self.directory / f"rank{trainer.global_rank}.safetensors"),
                  metadata={"global_step": str(trainer.global_step)})


class KillAt(pl.Callback):
    """SIGKILL the process when training reaches `step` (no clean-up, no final checkpoint)."""

    def __init__(self, step: int, sig: str = "SIGKILL") -> None:
        self.step, self.sig = step, getattr(signal, sig)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.sig)
