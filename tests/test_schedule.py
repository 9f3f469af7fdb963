"""The recipes' shared base (recipes/base.py): budget clock, the one LR schedule, weight average, parameter groups."""

import time

import lightning.pytorch as pl
import pytest
import torch

from recipes.base import Recipe, budget_progress, ema_decay, update_average, warmup_cosine


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
    assert warmup_cosine(100, 10, 1.0, min_ratio=0.1) == pytest.approx(0.1)  # decays to the floor
    assert warmup_cosine(100, 10, 0.5, min_ratio=0.1) == pytest.approx(0.55)
    assert warmup_cosine(100, 10, 2.0) == pytest.approx(0.0)  # progress past the end stays at the end


class Tiny(Recipe):
    no_decay_keys = ("pos",)

    def __init__(self, ema: bool = True, lr: float = 1.0, weight_decay: float = 0.1, warmup_steps: int = 1,
                 budget_seconds: float | None = None, ema_decay: float = 0.5, min_lr_ratio: float = 0.25) -> None:
        super().__init__()
        self.save_hyperparameters()
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
        model.register_parameter("pos", torch.nn.Parameter(torch.zeros(5, 4)))
        self.init_model(model, ema=ema)


def test_the_base_recipe_groups_parameters_averages_and_schedules() -> None:
    m = Tiny()
    decay, rest = m.param_groups()
    assert [p.shape for p in decay["params"]] == [(4, 3)] and decay["weight_decay"] == 0.1
    assert sorted(p.numel() for p in rest["params"]) == [4, 4, 4, 20] and rest["weight_decay"] == 0.0
    assert m.tokenizer is m.ema and not any(p.requires_grad for p in m.ema.parameters())
    plain = Tiny(ema=False)
    assert plain.ema is None and plain.tokenizer is plain.model
    with torch.no_grad():
        m.model[0].weight.add_(1.0)
    m.update_ema()  # decay at step 0: min(0.5, 1/10) = 0.1
    torch.testing.assert_close(m.ema[0].weight, m.model[0].weight - 0.1)
    opt = m.configure_optimizers()
    sched = opt["lr_scheduler"]["scheduler"]
    m._trainer = type("T", (), {"max_steps": 10, "global_step": 0})()
    m.start_time = time.monotonic()
    assert sched.lr_lambdas[0](0) == pytest.approx(1.0)  # warmup of one step, nothing done yet
    m._trainer = type("T", (), {"max_steps": 0, "global_step": 5})()
    m.hparams.budget_seconds, m.start_time = 10.0, time.monotonic() - 100.0
    assert sched.lr_lambdas[0](5) == pytest.approx(0.25)  # the clock ran out: the floor


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


class Phased(Tiny):
    def param_groups(self) -> list[dict]:
        first, second = self.model[0], self.model[1]
        return [*Recipe.param_groups(self, first, phase=(0.0, 0.5)),
                {"params": list(second.parameters()), "weight_decay": 0.0, "phase": (0.5, 1.0), "warmup_steps": 2}]


def test_groups_with_a_phase_train_in_it_with_their_own_warmup() -> None:
    m = Phased(ema=False, min_lr_ratio=0.0)
    sched = m.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert len(sched.lr_lambdas) == 3
    m.hparams.budget_seconds = None
    at = {}
    for step in (0, 3, 5, 6, 9):  # in order: a phase's first step is the first the schedule sees in it
        m._trainer = type("T", (), {"max_steps": 10, "global_step": step})()
        at[step] = [f(step) for f in sched.lr_lambdas]
    assert at[0][:2] == [pytest.approx(1.0)] * 2 and at[0][2] == 0.0  # the first phase, its warmup of one step
    assert at[3][0] == pytest.approx(warmup_cosine(3, 1, 0.6))  # its cosine runs over its own half
    assert at[5][:2] == [0.0, 0.0]  # the first phase is over
    assert at[5][2] == pytest.approx(0.5)  # the second begins: step 1 of a 2-step warmup
    assert at[6][2] == pytest.approx(warmup_cosine(1, 2, 0.2))  # counted from the phase's first step
    assert at[9][2] == pytest.approx(warmup_cosine(4, 2, 0.8))


class TwoOptimisers(Tiny):  # a GAN's shape: the second optimiser's phase begins at a step
    def optimizer_groups(self) -> list[list[dict]]:
        return [Recipe.param_groups(self, self.model[0]),
                Recipe.param_groups(self, self.model[1], start_step=4, warmup_steps=2)]


def test_a_second_optimiser_starts_its_phase_at_a_step() -> None:
    m = TwoOptimisers(ema=False, min_lr_ratio=0.0)
    m.hparams.budget_seconds = None
    optimizers, schedulers = m.configure_optimizers()
    assert len(optimizers) == 2 and [len(s.lr_lambdas) for s in schedulers] == [2, 2]
    at = {}
    for step in (0, 3, 4, 5, 7):  # in order: the phase begins at the first step the schedule sees from 4 on
        m._trainer = type("T", (), {"max_steps": 10, "global_step": step})()
        at[step] = [s.lr_lambdas[0](step) for s in schedulers]
    assert at[3] == [pytest.approx(warmup_cosine(3, 1, 0.3)), 0.0]  # the first trains; the second has not begun
    assert at[4][1] == pytest.approx(0.5)  # step 1 of its 2-step warmup, at the top of its cosine
    assert at[7][1] == pytest.approx(warmup_cosine(3, 2, 0.5))  # its cosine runs from progress 0.4 to the end


class OwnBetas(Tiny):  # LARP's shape: a discriminator optimiser with its own betas, AdamW's default weight decay
    def optimizer_groups(self) -> list[list[dict]]:
        groups = [Recipe.param_groups(self, self.model[0])]
        if self.hparams.get("betas"):
            groups.append([{"params": list(self.model[1].parameters()), "betas": (0.5, 0.9)}])
        return groups


def test_a_group_keeps_its_own_betas_and_a_recipe_stepping_by_hand_gets_lists() -> None:
    m = OwnBetas(ema=False)
    m.hparams.betas = (0.8, 0.95)
    optimizers, schedulers = m.configure_optimizers()
    assert [g["betas"] for g in optimizers[0].param_groups] == [(0.8, 0.95)] * 2  # the recipe's
    assert optimizers[1].param_groups[0]["betas"] == (0.5, 0.9)  # the group's own
    assert optimizers[1].param_groups[0]["weight_decay"] == torch.optim.AdamW([torch.zeros(1)]).defaults["weight_decay"]
    single = OwnBetas(ema=False)
    assert isinstance(single.configure_optimizers(), dict)  # one optimiser, stepped by Lightning
    single.automatic_optimization = False
    optimizers, schedulers = single.configure_optimizers()  # stepped by the recipe: lists, no interval to ignore
    assert len(optimizers) == 1 and isinstance(schedulers[0], torch.optim.lr_scheduler.LambdaLR)


class Busy(Tiny):
    """A Tiny recipe whose step costs a known amount of CPU (a few ms of matrix products)."""

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        a = torch.randn(200, 200)
        for _ in range(20):
            a = torch.tanh(a @ a)
        self.log("lr_factor", self.lr_factor(self.global_step))
        return self.model(batch[0]).pow(2).mean() + 0 * a.mean()


def test_a_cpu_budget_stops_the_run_and_drives_the_schedule(tmp_path) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    from recipes.base import CPUBudget, cpu_seconds

    torch.set_num_threads(1)
    budget = CPUBudget(seconds=0.6)
    m = Busy(ema=False, budget_seconds=0.6, min_lr_ratio=0.0)
    data = DataLoader(TensorDataset(torch.randn(64, 3)), batch_size=4)
    trainer = pl.Trainer(max_steps=10**6, max_epochs=-1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[budget],
                         default_root_dir=tmp_path)
    before = cpu_seconds()
    trainer.fit(m, data)
    used = cpu_seconds() - before
    assert 0.6 <= budget.used() < used  # stopped once the budget was spent, not by max_steps
    assert trainer.global_step < 10**6 and used < 10  # (generous: the fit's own start-up and tear-down are not counted)
    assert m.clock is cpu_seconds and m.progress() == 1.0  # the schedule counted the same CPU seconds
    assert m.lr_factor(trainer.global_step) == 0.0  # and ended where the run stopped


def test_a_cpu_budget_must_match_the_modules_budget() -> None:
    from recipes.base import CPUBudget

    with pytest.raises(ValueError, match="seconds > 0"):
        CPUBudget(seconds=0)
    trainer = type("T", (), {})()
    with pytest.raises(ValueError, match="budget_seconds=5"):
        CPUBudget(seconds=6).on_fit_start(trainer, Tiny(budget_seconds=5.0))
    m = Tiny()  # no time budget of its own: it gets the CPU clock, the run stops at the CPU budget
    CPUBudget(seconds=6).on_fit_start(trainer, m)
    assert m.clock() == pytest.approx(time.process_time(), abs=0.5)
