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


def test_summary_reads_the_chosen_clock(tmp_path):
    from benchmarks.goal_curves import read_curve, summarise

    path = _write(tmp_path / "g.csv", [(0, 2.0, 1.0, "photos", "num_tokens=8", 19.0, 8),
                                       (100, 240.0, 60.0, "photos", "num_tokens=8", 20.0, 8)])
    rows = read_curve(path)
    cpu, _ = summarise("run", rows, {"photos": 18.0}, points=2)
    wall, goals = summarise("run", rows, {"photos": 18.0}, points=2, clock="wall")
    assert "step 100 (1.0 CPU-min)" in cpu and "step 100 (4.0 GPU-min)" in wall  # 60 CPU-s vs 240 wall-s
    assert goals[0][-1] == "+0.00 dB"  # photos at 8 tokens vs mean colour 18 + 2 dB
