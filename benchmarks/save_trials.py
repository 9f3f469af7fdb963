"""Kill-during-save and concurrent-writer trials (forked processes, Linux) of `zoo.hub.save_module`; writes the `save-trials` section.

    python benchmarks/save_trials.py [--trials 30] [--saves 20]

Kill trials: a writer process saves two models (A, B) alternately into one folder, as fast as it can; it is
killed with SIGKILL at a random moment, then the folder must load (strictly, every hash checked) as A or B,
and the next save must leave no staging folder behind. Concurrent writers: two processes save A and B into
one folder at the same time while a third loads it in a loop; every load must give A or B, never a mix.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import ROOT, machine, table, write_section  # noqa: E402

def _fork(job) -> tuple[int, int]:
    """Run `job(write_fd)` in a forked child (no new interpreter to start); returns (pid, read end of its pipe)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(r)
        code = 0
        try:
            job(w)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(w)
    return pid, r


def _writer(folder: Path, which: str, n: int, dim: int):
    def job(w: int) -> None:
        from zoo.hub import save_module

        models = [model(c, dim) for c in which]
        for i in range(n):
            save_module(models[i % len(models)], folder, card=f"# save {i}")
            os.write(w, b".")
    return job


def _reader(folder: Path, seconds: float):
    def job(w: int) -> None:
        from zoo.hub import load

        ok, failed, reasons = 0, 0, set()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                identify(load(folder))
                ok += 1
            except ValueError as e:
                failed += 1
                reasons.add(str(e)[:120])
        os.write(w, f"{ok} {failed} {'|'.join(sorted(reasons))}".encode())
    return job


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def model(which: str, dim: int = 256):
    """Model A or B: a host ViT at random init, seeded by its letter (dim 256, depth 8: 25 MB of weights)."""
    import torch

    from zoo.reduce.host import HostClassifier, HostConfig

    torch.manual_seed(ord(which))
    return HostClassifier(HostConfig(dim=dim, depth=8, num_heads=4))


def identify(m) -> str:
    """'A' or 'B': which model a loaded checkpoint is (by a weight both are seeded to differ in)."""
    import torch

    for which in "AB":
        ref = _reference(which, m.config.dim)
        if torch.equal(ref, m.vit.pos_embed.detach()):
            return which
    raise ValueError("the folder holds neither model A nor model B: a mixed or foreign checkpoint")


_REFS: dict = {}


def _reference(which: str, dim: int):
    if (which, dim) not in _REFS:
        _REFS[which, dim] = model(which, dim).vit.pos_embed.detach()
    return _REFS[which, dim]


def _debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def kill_trials(n: int, root: Path, seed: int = 0, max_delay: float = 1.0, dim: int = 256) -> list[dict]:
    """Kill a saving process `n` times at random moments; after each, load the folder and save once more."""
    from zoo.hub import load, save_module

    rng = random.Random(seed)
    folder = root / "ckpt"
    rows = []
    save_module(model("A", dim), folder)
    for trial in range(n):
        pid, r = _fork(_writer(folder, "BA", 10**6, dim))
        os.read(r, 1)  # one more whole save is in place
        delay = rng.uniform(0, max_delay)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        debris = _debris(folder)
        try:
            outcome = identify(load(folder))
        except ValueError as e:
            outcome = f"unloadable: {str(e)[:80]}"
        save_module(model("A", dim), folder)  # the next run
        rows.append({"trial": trial, "delay_s": delay, "loads_as": outcome, "debris_after_kill": len(debris),
                     "debris_after_next_save": len(_debris(folder))})
    return rows


def concurrent_writers(saves: int, root: Path, read_seconds: float | None = None, dim: int = 256) -> dict:
    """Two processes save A and B into one folder while a third loads it in a loop."""
    from zoo.hub import load, save_module

    folder = root / "shared"
    save_module(model("A", dim), folder)
    model("B", dim)
    writers = [_fork(_writer(folder, w, saves, dim)) for w in "AB"]
    reader, r = _fork(_reader(folder, read_seconds or 2 + saves * 0.3))
    for pid, fd in writers:
        _read_all(fd)
        if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
            raise RuntimeError("a writer process failed")
    ok, failed, reasons = (_read_all(r).decode().split(" ", 2) + [""])[:3]
    os.waitpid(reader, 0)
    return {"saves_per_writer": saves, "final_loads_as": identify(load(folder)), "reader_loads_ok": int(ok),
            "reader_loads_failed": int(failed), "reader_failures": reasons, "debris": len(_debris(folder))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--saves", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        rows = kill_trials(args.trials, Path(tmp))
        kill_s = time.perf_counter() - start
        conc = concurrent_writers(args.saves, Path(tmp))
    loads = sum(r["loads_as"] in ("A", "B") for r in rows)
    parts = [
        "## Kill during save and concurrent writers",
        f"`python benchmarks/save_trials.py --trials {args.trials} --saves {args.saves}`; {machine()}. A writer process "
        "saves two host ViTs at random init (A, B; 25 MB of weights each) alternately into one folder with "
        "`zoo.hub.save_module` and is killed with SIGKILL after a random delay (uniform in 0-1 s after its first whole "
        "save); then the folder is loaded strictly (every sha256 checked) and saved once more (the next run).",
        f"**{loads} of {len(rows)} killed saves left a folder that loads as one whole model** "
        f"({sum(r['loads_as'] == 'A' for r in rows)} as A, {sum(r['loads_as'] == 'B' for r in rows)} as B); "
        f"{sum(r['debris_after_kill'] > 0 for r in rows)} kills left a staging folder behind, and "
        f"{sum(r['debris_after_next_save'] > 0 for r in rows)} remained after the next save ({kill_s:.0f} s in all).",
        table(["trial", "kill after (s)", "loads as", "staging folders after the kill", "after the next save"],
              [[r["trial"], round(r["delay_s"], 3), r["loads_as"], r["debris_after_kill"], r["debris_after_next_save"]]
               for r in rows]),
        f"Concurrent writers: two processes each saved {conc['saves_per_writer']} times into one folder while a third "
        f"loaded it in a loop: the reader's loads: {conc['reader_loads_ok']} whole, {conc['reader_loads_failed']} failed"
        + (f" ({conc['reader_failures']})" if conc["reader_failures"] else "")
        + f"; afterwards the folder loads as {conc['final_loads_as']}, with {conc['debris']} staging folders left.",
    ]
    write_section("save-trials", "\n\n".join(parts))
    print("\n\n".join(parts))


if __name__ == "__main__":
    main()
