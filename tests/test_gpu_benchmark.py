"""benchmarks/gpu.py stays runnable between GPU sessions: its CPU smoke run measures a tiny preset."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import gpu  # noqa: E402


def test_gpu_benchmark_smoke_run_on_cpu(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["gpu.py", "--device", "cpu", "--tiny", "--no-write", "--names", "larp-micro",
                                      "--repeat", "1", "--no-compile"])
    gpu.main()
    out = capsys.readouterr().out
    row = re.search(r"^\| `larp-micro \(random init\)` \| float32 \| eager \| (\d+) \| ([\d.]+) \| ([\d.]+) \|", out, re.M)
    assert row, out[-2000:]
    assert int(row.group(1)) >= 1 and float(row.group(2)) > 0 and float(row.group(3)) > 0
    assert "larp-tiny" not in out  # --names filters
