"""benchmarks/goal_curve.py: stages of a run join into one curve, times and steps continuing."""

from __future__ import annotations

from benchmarks import goal_curve


def _write(path, rows):
    path.write_text("step,wall_s,cpu_s,source,budget,psnr,tokens\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def test_later_stages_continue_the_first(tmp_path):
    a = _write(tmp_path / "a.csv", [(0, 1, 0.5, "pans", "num_tokens=1", 18.0, 1), (60, 100, 40, "pans", "num_tokens=1", 18.5, 1)])
    b = _write(tmp_path / "b.csv", [(0, 2, 1, "pans", "num_tokens=1", 18.5, 1), (30, 50, 20, "pans", "num_tokens=1", 19.0, 1)])
    rows = goal_curve.merge_stages([a, b])
    assert [(r["stage"], r["step"], r["wall_s"], r["cpu_s"], r["psnr"]) for r in rows] == [
        (1, 0.0, 1.0, 0.5, 18.0), (1, 60.0, 100.0, 40.0, 18.5), (2, 90.0, 150.0, 60.0, 19.0)]  # b's step 0 repeats a's end
    text = goal_curve.section(rows, tmp_path / "c.png", "cmd", "title", [a, b])
    assert "18.00 → 19.00 (+1.00)" in text and "90 steps" in text
    goal_curve.plot(rows, tmp_path / "c.png", "title")
    assert (tmp_path / "c.png").stat().st_size > 0


def test_fixed_budgets_are_token_counts_or_fixed_ratios():
    from benchmarks.goal_curves import budget_tokens

    rows = [{"budget": "ratio=16", "tokens": 4.0}, {"budget": "ratio=16", "tokens": 4.0},
            {"budget": "quality=0.004", "tokens": 40.5}, {"budget": "quality=0.004", "tokens": 4.0}]
    assert budget_tokens("num_tokens=8") == 8.0
    assert budget_tokens("ratio=16", rows) == 4.0  # CAT: a fixed ratio is a fixed token count
    assert budget_tokens("quality=0.004", rows) is None and budget_tokens("ratio=auto", rows) is None
