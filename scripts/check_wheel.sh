#!/usr/bin/env bash
# Build the wheel, install it into a fresh venv away from the checkout, then list and load every shipped
# checkpoint from the installed package (`make test` runs this after the test suite).
#
# The fresh venv has no system site packages and no editable install. Its dependencies (torch, timm, ...)
# are found through a .pth line naming the project venv's site-packages, because they cannot be downloaded
# here; a path in a .pth file does not run that folder's own .pth files, so the project's editable install
# of zoo stays invisible and `import zoo` must come from the wheel (checked below).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=build/wheel-check
rm -rf "$OUT"
mkdir -p "$OUT"
"$PY" -m pip wheel . --no-deps --no-build-isolation --quiet --wheel-dir "$OUT/dist"
"$PY" -m venv "$OUT/venv"
"$OUT/venv/bin/python" -m pip install --quiet --no-index --no-deps "$OUT"/dist/*.whl
deps=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
site=$("$OUT/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$deps" > "$site/_zoo_dependencies.pth"
shipped=$(ls -d checkpoints/*/ | xargs -n1 basename | sort | tr '\n' ' ')
mkdir -p "$OUT/run"
cd "$OUT/run"
env -u PYTHONPATH ZOO_CACHE="$PWD/cache" HF_HUB_OFFLINE=1 ../venv/bin/zoo list > list.txt
env -u PYTHONPATH ZOO_CACHE="$PWD/cache" HF_HUB_OFFLINE=1 SHIPPED="$shipped" ../venv/bin/python - <<'PYEOF'
import json, os, sys
from pathlib import Path

import zoo
import zoo.hub as hub

venv = Path(sys.prefix).resolve()
assert Path(zoo.__file__).resolve().is_relative_to(venv), f"zoo was imported from {zoo.__file__}, not the wheel in {venv}"
assert "recipes" not in sys.modules
shipped = os.environ["SHIPPED"].split()
listed = Path("list.txt").read_text()
tokenizers = [r["name"] for r in zoo.list_tokenizers() if r["shipped"]]
missing = [n for n in tokenizers if n not in listed]
assert tokenizers and not missing, f"`zoo list` misses {missing}"
loaded = []
for name in shipped:
    if "family" not in json.loads((hub.REPO_CHECKPOINTS / name / "config.json").read_text()):
        print(f"skipped {name}: not in the one checkpoint format yet")
        continue
    model = zoo.load(name)
    assert Path(hub.locate(name)).resolve().is_relative_to(venv), hub.locate(name)
    loaded.append(name)
print(f"wheel check: {len(tokenizers)} tokenizers listed, {len(loaded)} of {len(shipped)} shipped checkpoints loaded from {venv}")
PYEOF
