"""benchmarks/audio_releases.py: a run of some codecs keeps the other codecs' rows, notes and the command lines that
made them, saying which of a kept line's rows a later run replaced."""

from __future__ import annotations

from benchmarks import audio_releases, report


def test_a_partial_run_keeps_the_other_codecs_rows_and_their_command(tmp_path, monkeypatch):
    both = "`OMP_NUM_THREADS=1 python benchmarks/audio_releases.py --codecs mimi dac-16khz --seconds 10` on a machine."
    mimi = "`OMP_NUM_THREADS=1 python benchmarks/audio_releases.py --codecs mimi --seconds 10` on a machine."
    section = audio_releases.SECTION
    file = tmp_path / "BENCHMARKS.md"
    file.write_text("\n".join([
        f"<!-- begin {section} -->", f"- {both} (its mimi rows replaced by a later run)", f"- {mimi}", "",
        "| mimi | ref | " + " | ".join("1" * 12) + " |", "| dac-16khz | ref | " + " | ".join("2" * 12) + " |",
        "| mimi | 10 | 1 | 2 | 3 | 4 |", "| dac-16khz | 10 | 5 | 6 | 7 | 8 |",
        "- mimi: a note", "- dac-16khz: another", f"<!-- end {section} -->"]))
    monkeypatch.setattr(report, "BENCHMARKS", file)

    kept = audio_releases._kept_rows({"mimi"})  # re-measuring mimi: DAC's rows and the line that made them stay
    assert kept["runs"] == [both + " (its mimi rows replaced by a later run)"]
    assert [r[0] for r in kept["speed"] + kept["memory"]] == ["dac-16khz", "dac-16khz"]
    assert kept["notes"] == ["dac-16khz: another"]
    kept = audio_releases._kept_rows({"dac-16khz"})  # the older line made no row that is left: only the newer stays
    assert kept["runs"] == [mimi] and [r[0] for r in kept["speed"]] == ["mimi"]
    assert audio_releases._kept_rows({"mimi", "dac-16khz"}) == {"speed": [], "memory": [], "notes": [], "runs": []}
