"""Every example in the README runs: the Python blocks, and the command-line block, in a scratch folder."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


@pytest.mark.parametrize("code", blocks("python"))
def test_python_examples_run(code, tmp_path):
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


def test_command_line_examples_run(tmp_path):
    commands = [line for b in blocks("bash") for line in b.splitlines() if line.startswith(".venv/bin/")]
    commands = [c for c in commands if " train " not in c]  # training rewrites shipped checkpoints; see test_beast
    assert commands, "the README shows no command-line example"
    for command in commands:
        command = command.replace(".venv/bin/", f"{BIN}/")
        out = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
        assert out.returncode == 0, f"{command}\n{out.stderr}"
