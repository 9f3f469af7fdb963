"""benchmarks/real_inputs.py: baselines never spend more bits than the tokens, and the goal table covers every budget."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from benchmarks import real_inputs as ri
from zoo import hub


@pytest.fixture(scope="module")
def sets():
    full = ri.image_sets(n_photos=3, n_flat=1)
    return full


def test_thumbnail_and_jpeg_stay_within_the_bits(sets):
    x = sets["photos"]["x"]
    budgets = [5.0, 6.0, 27.0, 100.0, 250.0, 1022.0]
    thumbs = ri.thumbnail_candidates(x, max(budgets))
    jpegs = ri.jpeg_candidates(x, max(budgets))
    for b in budgets:
        bits = torch.full((len(x),), b, dtype=torch.float64)
        for cands in (thumbs, *jpegs.values()):
            chosen = cands.at(bits)
            used = chosen["bits"][~chosen["bits"].isnan()]
            assert bool((used <= b).all()), (b, used)
    # 5 bits buy no thumbnail (1x1 at 1 bit costs 3 + 3); 6 do; whole-file JPEG never fits 1022 bits on 32 x 32
    assert bool(thumbs.at(torch.full((3,), 5.0))["psnr"].isnan().all())
    assert not bool(thumbs.at(torch.full((3,), 6.0))["psnr"].isnan().any())
    assert bool(jpegs["jpeg"].at(torch.full((3,), 1022.0))["psnr"].isnan().all())
    scan = jpegs["jpeg_scan"].at(torch.full((3,), 1022.0))
    assert not bool(scan["psnr"].isnan().any()) and bool((scan["bits"] <= 1022).all())
    # more bits never make the chosen thumbnail worse (the encoder picks the best that fits)
    psnr = [thumbs.at(torch.full((3,), b))["psnr"] for b in budgets[1:]]
    assert all(bool((a <= b + 1e-6).all()) for a, b in zip(psnr, psnr[1:]))


def test_a_flat_colour_thumbnail_is_its_colour():
    x = torch.zeros(1, 3, 32, 32)
    x[:, 0], x[:, 1], x[:, 2] = 0.2, 1.0, 0.7
    y = ri.thumbnail(x, 1, 8)
    assert float((y - x).abs().max()) <= 0.5 / 255 + 1e-6
    assert float(ri.scores(ri.mean_colour(x), x)[0]) > 50


def test_jpeg_scan_is_part_of_the_file(sets):
    img = ri.to_uint8(sets["photos"]["x"][0])
    data = ri.jpeg_file(img, 50)
    scan = ri.jpeg_scan_bytes(data)
    assert 0 < scan < len(data) - 500  # the headers and tables are most of a 32 x 32 file
    with pytest.raises(ValueError):
        ri.jpeg_scan_bytes(data[:-2])


def test_budgets_cover_every_knob_value():
    karl = ri.load_tokenizer(str(hub.REPO_CHECKPOINTS / "karl-tiny-nat32"))
    budgets = ri.budgets_of(karl)
    fixed = [b for b in budgets if b.fixed]
    assert [b.kwargs["num_tokens"] for b in fixed] == list(range(1, karl.spec.max_tokens + 1))
    assert sum(b.quality is not None for b in budgets) == len(ri.QUALITIES) + 2  # targets, default, search
    coarse = [b.kwargs["num_tokens"] for b in ri.budgets_of(karl, coarse=True) if b.fixed]
    assert coarse[0] == 1 and coarse[-1] == karl.spec.max_tokens and len(coarse) < len(fixed)


def test_goal_table_has_a_row_per_budget(sets):
    toks = {role: ri.load_tokenizer(str(hub.REPO_CHECKPOINTS / ri.DEFAULTS[role])) for role in ("karl", "cat")}
    budgets = {
        "karl": [ri.Budget("num_tokens=1", {"num_tokens": 1}, True), ri.Budget("num_tokens=8", {"num_tokens": 8}, True),
                 ri.Budget("quality=0.004", {"quality": 0.004}, False, 0.004)],
        "cat": [b for b in ri.budgets_of(toks["cat"]) if b.fixed or b.label == "quality=0.004"],
    }
    report = ri.measure_images(toks, sets, budgets, keep=1)
    rows = ri.image_budget_rows(report)
    assert [(r["role"], r["budget"]) for r in rows] == [(role, b.label) for role, bs in budgets.items() for b in bs]
    for r in rows:
        m = report.runs[r["role"], r["budget"], "photos"]
        assert r["bits"] == pytest.approx(float(m.tokens.mean()) * ri.token_bits(toks[r["role"]]))
        assert math.isnan(r["thumbnail_bits"]) or r["thumbnail_bits"] <= r["bits"] + 1e-9
        assert math.isnan(r["jpeg"])  # the whole file never fits
    goals = ri.image_goals(report, rows)
    names = [(g[1], g[0].split(" (")[0]) for g in goals]
    for role in budgets:
        assert (role, "above the thumbnail") in names
        assert (role, "flat colours >= 30 dB at the smallest budget") in names
        assert (role, "quality= met, or the result says it is not") in names
    assert all(g[5] in ("PASS", "FAIL", "n/a") for g in goals)
    assert report.runs["karl", "num_tokens=1", "photos"].recon.shape == (1, 3, 32, 32)
    report.sources = {role: ri.DEFAULTS[role] for role in toks}
    report.bits_text = {role: f"{ri.token_bits(t):.2f} bits" for role, t in toks.items()}
    text = ri.image_section(report, rows, goals, "cmd", Path("a.png"), Path("b.png"))
    assert text.count("| karl-tiny-nat32 | num_tokens=8 |") == 2  # the every-budget table and the per-source table
    assert text.count("| cat-tiny-nat32 | ratio=") == 2 * 3


def test_video_set_names_every_video_source():
    clips = ri.video_set(4, ("still", "fades"))
    assert clips["source"].tolist() == ["still", "fades", "still", "fades"] and clips["x"].shape[0] == 4
