"""Importing a family module must not import the heavy libraries it builds with (issue 22: each family
module imports in well under a second beyond torch); they load when a model is first built."""

import subprocess
import sys

HEAVY = ("timm", "vector_quantize_pytorch", "einx", "transformers", "diffusers", "torchvision", "torch._dynamo")
MODULES = ("zoo.image.flextok", "zoo.image.flextok_release", "zoo.image.karl", "zoo.image.cat", "zoo.video.larp", "zoo.audio.codec",
           "zoo.audio.dac",
           "zoo.action.beast", "zoo.action.baselines", "zoo.reduce", "zoo.reduce.vq", "zoo.nn", "zoo.nn.seanet",
           "zoo.nn.istft", "zoo.nn.transformer", "zoo.tokenizer", "zoo.hub")


def test_family_modules_import_no_heavy_library():
    # one process for all modules: a heavy import is charged to the first module that triggers it
    code = (
        "import importlib, sys, torch\n"
        f"for module in {MODULES!r}:\n"
        "    before = set(sys.modules)\n"
        "    importlib.import_module(module)\n"
        f"    heavy = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in {HEAVY!r} or m in {HEAVY!r})\n"
        "    print(module, *heavy[:5])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    offenders = [line for line in out.stdout.splitlines() if len(line.split()) > 1]
    assert len(out.stdout.splitlines()) == len(MODULES)
    assert not offenders, f"import these inside the constructor instead: {offenders}"


def test_building_a_model_still_imports_what_it_needs():
    code = ("import sys, torch; from zoo.audio.codec import Codec, CodecConfig; "
            "Codec(CodecConfig.from_name('tiny')); print('vector_quantize_pytorch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "True", out.stderr


def test_the_library_and_its_cli_never_import_recipes(tmp_path):
    """Tokenizing never needs the training code: `import zoo`, loading and every CLI command but the ones the
    recipes contribute (`train`, `shards`) run without importing `recipes` (or Lightning)."""
    code = (
        "import sys, contextlib, io, numpy as np\n"
        "import zoo\n"
        "from zoo.cli import main\n"
        "from zoo.data.actions import load_lasa\n"
        "zoo.list_tokenizers(); zoo.load('beast-lasa')\n"
        f"d = {str(tmp_path)!r}\n"
        "np.save(d + '/x.npy', load_lasa('val')[0][0])\n"
        "runs = [['list'], ['list', '--json'], ['info', 'beast-lasa'], ['info', 'cat-tiny-nat32'],\n"
        "        ['encode', 'beast-lasa', d + '/x.npy', '-o', d + '/t.npz'], ['decode', 'beast-lasa', d + '/t.npz', '-o', d + '/y.npy'],\n"
        "        ['encode', 'nope', d + '/x.npy', '-o', d + '/u.npz'], ['--help'], ['encode', '--help'], ['demo', '--help'], ['nope']]\n"
        "codes = []\n"
        "for argv in runs:\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "        try:\n"
        "            codes.append(main(argv))\n"
        "        except SystemExit as e:\n"
        "            codes.append(e.code)\n"
        "import zoo.demo\n"
        "print(codes)\n"
        "print(*sorted(m for m in sys.modules if m.split('.')[0] in ('recipes', 'lightning')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    codes, imported = out.stdout.splitlines()[-2:]
    assert codes == "[0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2]", out.stderr  # every path ran (the last two are user errors)
    assert imported == "", f"the library imported {imported}"


def test_zoo_info_of_a_registered_name_imports_no_torch(tmp_path):
    # issue 22: `zoo info NAME` in <= 1 s; it reads the index and the checkpoint's config.json, builds nothing;
    # a release not downloaded yet is described from the index, offline, without fetching or converting it
    import os

    code = ("import sys; from zoo.cli import main; main(['info', 'codec-small-speech16k']); "
            "main(['info', 'fast-universal']); print('torch imported:', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "ZOO_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    assert "processor:    any rate and channels → 16000 Hz" in out.stdout
    assert "not downloaded yet: zoo.load('fast-universal') fetches tokenizer.json, processor_config.json" in out.stdout
    assert "licence:      Apache-2.0" in out.stdout and "decode opts:  num_steps=None, num_dof=None" in out.stdout
    assert out.stdout.splitlines()[-1] == "torch imported: False", out.stdout
    assert os.listdir(tmp_path) == []  # nothing fetched, nothing converted
