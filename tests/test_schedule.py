"""The recipes' shared budget clock and weight average (recipes/schedule.py)."""

import time

import lightning.pytorch as pl
import pytest
import torch

from recipes.schedule import budget_progress, ema_decay, update_average, warmup_cosine


class Clocked(pl.LightningModule):
    def __init__(self, budget_seconds: float | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.start_time: float | None = None


def test_progress_follows_the_clock_when_no_trainer_is_attached() -> None:
    m = Clocked(budget_seconds=100.0)
    assert budget_progress(m) == 0.0  # not started
    m.start_time = time.monotonic() - 25.0
    assert budget_progress(m) == pytest.approx(0.25, abs=0.01)
    m.start_time = time.monotonic() - 1000.0
    assert budget_progress(m) == 1.0  # capped
    assert budget_progress(Clocked()) == 0.0  # no budget, no trainer


def test_progress_takes_the_further_of_steps_and_seconds() -> None:
    m = Clocked(budget_seconds=100.0)
    m._trainer = type("T", (), {"max_steps": 200})()
    m.start_time = time.monotonic() - 10.0
    assert budget_progress(m, step=100) == pytest.approx(0.5)
    assert budget_progress(m, step=0) == pytest.approx(0.1, abs=0.01)


def test_ema_warms_up_then_caps_and_averages() -> None:
    assert ema_decay(0.999, 0) == pytest.approx(0.1)
    assert ema_decay(0.999, 10**6) == 0.999
    avg, p = [torch.zeros(3)], [torch.ones(3)]
    update_average(avg, p, 0.75)
    torch.testing.assert_close(avg[0], torch.full((3,), 0.25))


def test_warmup_then_cosine() -> None:
    assert warmup_cosine(0, 10, 0.0) == pytest.approx(0.1)  # first step of the warmup
    assert warmup_cosine(9, 10, 0.0) == pytest.approx(1.0)
    assert warmup_cosine(100, 10, 0.5) == pytest.approx(0.5)
    assert warmup_cosine(100, 10, 1.0) == pytest.approx(0.0)
    assert warmup_cosine(0, 0, 0.0) == pytest.approx(1.0)  # no warmup


def test_rewrite_card_keeps_the_training_time_and_records_the_new_metrics(tmp_path) -> None:
    import json

    from recipes.export import rewrite_card
    from zoo.action.baselines import Binning, BinningConfig

    class Module:  # what rewrite_card needs of a recipe's LightningModule
        tokenizer = Binning(BinningConfig(num_dof=2))

        def card_metrics(self, datamodule: object) -> dict[str, float]:
            return {"mse": 0.5, "val_items": float(datamodule)}

        def card_summary(self) -> dict[str, str]:
            return {"description": "a re-measured card"}

    (tmp_path / "train_log.json").write_text(json.dumps({"seconds": 120.0, "metrics": {"mse": 0.9}}))
    out = rewrite_card(Module(), tmp_path, 7, name="t", data="d", recipe="r", log_extra={"chosen_on": "train"})
    assert out == {"mse": 0.5, "val_items": 7.0}
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert log == {"seconds": 120.0, "metrics": out, "chosen_on": "train"}
    card = (tmp_path / "README.md").read_text()
    assert "a re-measured card" in card and "2.0 minutes" in card and "| mse | 0.5 |" in card
