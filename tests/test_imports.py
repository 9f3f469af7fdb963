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
