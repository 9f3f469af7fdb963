"""The `zoo` command on real files: list, info, encode and decode of .npy and .csv trajectories."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo.cli import main
from zoo.data.actions import load_lasa

ROOT = Path(__file__).resolve().parent.parent


def test_list_and_info(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "beast-lasa" in out and "action" in out
    assert main(["list", "--json"]) == 0
    assert any(r["name"] == "beast-lasa" for r in json.loads(capsys.readouterr().out))
    assert main(["info", "beast-lasa"]) == 0
    out = capsys.readouterr().out
    assert "input layout: (B, T, D)" in out and "vocabulary:   256 x 1" in out and "card val_mse" in out


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_encode_decode_files(tmp_path, suffix, capsys):
    x = load_lasa("val", 100)[0][0]  # (T, 2)
    src = tmp_path / f"traj{suffix}"
    np.savetxt(src, x, delimiter=",") if suffix == ".csv" else np.save(src, x)
    assert main(["encode", "beast-lasa", str(src), "-o", str(tmp_path / "t.npz"), "--num-tokens", "30"]) == 0
    with np.load(tmp_path / "t.npz") as f:
        assert f["ids"].shape == (1, 30)
    out = tmp_path / f"recon{suffix}"
    assert main(["decode", "beast-lasa", str(tmp_path / "t.npz"), "-o", str(out), "-O", "num_steps=100"]) == 0
    y = np.loadtxt(out, delimiter=",") if suffix == ".csv" else np.load(out)
    assert y.shape == x.shape
    assert np.mean((y - x) ** 2) < 1.0


def test_errors_are_reported_not_raised(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n4,5,6\n")  # 3 dofs for a 2-dof tokenizer
    assert main(["encode", "beast-lasa", str(bad), "-o", str(tmp_path / "t.npz")]) == 2
    assert "axis D must be 2" in capsys.readouterr().err
    assert main(["encode", "beast-lasa", str(tmp_path / "missing.npy"), "-o", str(tmp_path / "t.npz")]) == 2
    assert "no input file" in capsys.readouterr().err
    (tmp_path / "junk.csv").write_text("a,b\n")
    assert main(["encode", "beast-lasa", str(tmp_path / "junk.csv"), "-o", str(tmp_path / "t.npz")]) == 2
    assert "not a numeric CSV" in capsys.readouterr().err
    assert main(["info", "beast-lasaa"]) == 2
    assert "did you mean" in capsys.readouterr().err
    np.savez(tmp_path / "t.npz", ids=np.full((1, 20), 999), lengths=np.array([20]))
    assert main(["decode", "beast-lasa", str(tmp_path / "t.npz"), "-o", str(tmp_path / "y.npy")]) == 2
    assert "out of range" in capsys.readouterr().err


def test_console_script_runs(tmp_path):
    exe = Path(sys.executable).parent / "zoo"
    out = subprocess.run([str(exe), "list"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0 and "beast-lasa" in out.stdout


def _image(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_user_errors_exit_2_with_one_line_naming_the_knobs(tmp_path, capsys):
    img, out = str(_image(tmp_path)), str(tmp_path / "t.npz")
    assert main(["encode", "cat-tiny-nat32", img, "-o", out, "--num-tokens", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "CAT.encode takes ratio, quality, min_gain_db, search" in err
    assert main(["encode", "flextok-tiny-nat32", img, "-o", out, "-O", "steps=8"]) == 2
    assert "steps is a decode option" in capsys.readouterr().err
    assert main(["encode", "flextok-tiny-nat32", img, "-o", out, "--num-tokens", "8"]) == 0
    assert main(["decode", "flextok-tiny-nat32", out, "-o", str(tmp_path / "y.png"), "-O", "steps=2"]) == 0
    assert main(["encode", "cat-tiny-nat32", img, "-o", out, "--search", "--quality", "0.004"]) == 0
    assert main(["encode", "cat-tiny-nat32", img, "-o", str(tmp_path / "no-such-dir" / "t.npz")]) == 2
    assert "No such file or directory" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["cat-tiny-nat32", "codec-small-speech16k", "beast-lasa"])
def test_info_of_a_shipped_name_from_the_index_matches_info_of_a_copy_of_its_folder(name, tmp_path, capsys):
    """A shipped name is described from the index (no torch); any other folder from its config (with torch)."""
    import shutil

    from zoo import hub

    copy = shutil.copytree(hub.locate(name), tmp_path / "copy")
    assert main(["info", name]) == 0
    shipped = capsys.readouterr().out.splitlines()
    assert main(["info", str(copy)]) == 0
    copied = capsys.readouterr().out.splitlines()
    assert shipped[1] == copied[1] and shipped[3:] == copied[3:] and len(shipped) > 10  # all but name and files
    assert any(line.startswith("processor:") for line in shipped) == (name != "beast-lasa")


def test_info_lists_the_knobs_and_decode_options(capsys):
    assert main(["info", "flextok-tiny-nat32"]) == 0
    out = capsys.readouterr().out
    assert "encode knobs: num_tokens=None" in out and "decode opts:  steps=None, guidance=None, seed=0" in out
    assert main(["info", "cat-tiny-nat32"]) == 0
    assert "search=False" in capsys.readouterr().out


def test_decoding_another_tokenizers_tokens_needs_force(tmp_path, capsys):
    img, out = str(_image(tmp_path)), str(tmp_path / "t.npz")
    assert main(["encode", "karl-tiny-nat32", img, "-o", out]) == 0
    assert main(["decode", "flextok-tiny-nat32", out, "-o", str(tmp_path / "b.png")]) == 2
    err = capsys.readouterr().err
    assert "made by 'karl-tiny-nat32'" in err and "--force" in err and not (tmp_path / "b.png").exists()
    assert main(["decode", "karl-tiny-nat32", out, "-o", str(tmp_path / "a.png")]) == 0
    assert main(["decode", "flextok-tiny-nat32", out, "-o", str(tmp_path / "b.png"), "--force", "-O", "steps=1"]) == 0


def _install_commands(site: Path, commands: dict[str, str], name: str = "zoo-commands-test") -> None:
    """A distribution in `site` (put on sys.path) declaring `commands` in the `zoo.commands` group, as pip
    writes one: the tests see the entry points pyproject.toml declares whatever the venv installed."""
    info = site / f"{name.replace('-', '_')}-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[zoo.commands]\n" + "".join(f"{k} = {v}\n" for k, v in commands.items()))


def _declared_commands() -> dict[str, str]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["zoo.commands"]


def test_train_and_shards_come_from_the_recipes_entry_points(tmp_path, monkeypatch, capsys):
    declared = _declared_commands()
    assert sorted(declared) == ["shards", "train"] and all(v.startswith("recipes.") for v in declared.values())
    _install_commands(tmp_path / "site", declared)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "from recipes (`zoo train --help`)" in capsys.readouterr().out
    assert main(["train", "--help"]) == 0 and "zoo train CONFIG.yaml" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["shards", "--help"])
    assert e.value.code == 0 and "--chunk-bytes" in capsys.readouterr().out
    out = tmp_path / "binning"  # the README's `zoo train configs/... --output DIR`, through the entry point
    assert main(["train", str(ROOT / "configs/binning/lasa.yaml"), "--output", str(out)]) == 0
    import zoo

    assert zoo.load(out).spec.modality == "action" and str(out) in capsys.readouterr().out


def test_train_without_the_training_extras_says_what_to_install(tmp_path, monkeypatch, capsys):
    import importlib.util

    _install_commands(tmp_path / "site", _declared_commands())
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lightning" else find_spec(name, *a))
    assert main(["train", str(ROOT / "configs/binning/lasa.yaml")]) == 2
    err = capsys.readouterr().err
    assert "lightning not installed" in err and "pip install 'zoo-tokenizers[train]'" in err and len(err.splitlines()) == 1


def test_any_package_can_add_a_command(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    site.mkdir()
    (site / "zoo_hello.py").write_text("def hello(argv):\n    print('hello', *argv)\n    return 3\n\n"
                                      "def bad(argv):\n    raise ValueError('no such thing')\n")
    _install_commands(site, {"hello": "zoo_hello:hello", "bad": "zoo_hello:bad", "gone": "zoo_gone:run",
                             "list": "zoo_hello:hello"})
    monkeypatch.syspath_prepend(str(site))
    assert main(["hello", "a", "--b"]) == 3 and capsys.readouterr().out == "hello a --b\n"
    assert main(["bad"]) == 2 and capsys.readouterr().err == "zoo bad: error: no such thing\n"
    assert main(["gone"]) == 2 and "zoo_gone" in capsys.readouterr().err  # one line, no traceback
    assert main(["list"]) == 0 and "beast-lasa" in capsys.readouterr().out  # a built-in command is not replaced


def _list_table(capsys) -> dict[str, dict[str, str]]:
    """`zoo list` as printed: {name: {column: cell}}, cut at the header's column starts."""
    assert main(["list"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    columns = header.split()
    starts = [header.index(c) for c in columns] + [None]
    cells = [{c: line[a:b].strip() for c, a, b in zip(columns, starts, starts[1:])} for line in lines]
    return {row["name"]: row for row in cells}


def test_list_shows_every_row_as_its_registration_and_preset_say(capsys):
    """No None or ? in any row, released and not downloaded included; the values are the presets' (bits per
    sample at the most tokens; audio in kbit/s at all codebooks; BPE's token count is variable)."""
    import math

    from zoo.audio.dac import DACConfig
    from zoo.audio.mimi import MimiConfig
    from zoo.video.larp import LARPConfig

    table = _list_table(capsys)
    assert {"dac-16khz", "mimi", "larp-l-long", "fast-universal", "flextok-d12-d12-in1k"} <= set(table)
    for name, row in table.items():
        cells = [row[c] for c in ("modality", "tokens", "vocab", "bits")]
        assert "None" not in " ".join(row.values()) and "?" not in cells and "" not in cells, (name, row)
    for name, c in (("dac-16khz", DACConfig.from_name("16khz")), ("mimi", MimiConfig()), ("mimi-moshiko", MimiConfig())):
        assert table[name]["bits"] == f"{c.kbps(c.num_codebooks):.3g} kbps max"
        assert table[name]["vocab"] == f"{c.codebook_size} x {c.num_codebooks}"
    larp = LARPConfig.from_name("larp-l")
    assert table["larp-l-long"]["tokens"] == str(larp.max_tokens)  # no nested dropout: all tokens only
    assert table["larp-l-long"]["vocab"] == str(larp.codebook_size)
    assert table["larp-l-long"]["bits"] == f"{larp.max_tokens * math.log2(larp.codebook_size):.0f}"
    assert table["fast-universal"]["bits"] == "variable" and table["fast-universal"]["tokens"].startswith("variable")


@pytest.mark.parametrize("name", ["larp-l-long", "dac-16khz", "fast-universal"])
def test_info_of_a_release_not_downloaded_says_what_list_says(name, capsys):
    row = _list_table(capsys)[name]
    assert main(["info", name]) == 0
    out = capsys.readouterr().out
    assert "not downloaded yet" in out
    for label, column in (("tokens:", "tokens"), ("vocabulary:", "vocab"), ("bits:", "bits")):
        assert f"{label:<14}{row[column]}\n" in out


def test_decode_takes_the_name_the_token_file_records(tmp_path, capsys):
    src, tokens = tmp_path / "traj.npy", str(tmp_path / "t.npz")
    np.save(src, load_lasa("val", 100)[0][0])
    assert main(["encode", "beast-lasa", str(src), "-o", tokens, "--num-tokens", "20"]) == 0
    assert main(["decode", "beast-lasa", tokens, "-o", str(tmp_path / "named.npy")]) == 0
    assert main(["decode", tokens, "-o", str(tmp_path / "recorded.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "named.npy"), np.load(tmp_path / "recorded.npy"))
    capsys.readouterr()
    assert main(["decode", "beast-reaching7", tokens, "-o", str(tmp_path / "other.npy")]) == 2  # both given: checked
    assert "made by 'beast-lasa'" in capsys.readouterr().err and not (tmp_path / "other.npy").exists()


def test_decode_without_a_name_of_a_file_that_records_none_says_to_give_it(tmp_path, capsys):
    from zoo import hub

    old = tmp_path / "old.npz"
    np.savez(old, ids=np.zeros((1, 20), dtype=np.int64), lengths=np.array([20]))  # written before provenance
    assert main(["decode", str(old), "-o", str(tmp_path / "y.npy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not record which tokenizer made it" in err and "zoo decode NAME" in err
    # made by a tokenizer loaded from a folder: the file names its family, not where to load it from
    src, tokens = tmp_path / "traj.npy", str(tmp_path / "t.npz")
    np.save(src, load_lasa("val", 100)[0][0])
    assert main(["encode", str(hub.locate("beast-lasa")), str(src), "-o", tokens]) == 0
    capsys.readouterr()
    assert main(["decode", tokens, "-o", str(tmp_path / "y.npy")]) == 2
    err = capsys.readouterr().err
    assert "'beast'" in err and "zoo decode NAME" in err and not (tmp_path / "y.npy").exists()
