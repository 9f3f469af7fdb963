# `make demo` and `make test` set everything up on a fresh machine (Debian packages, .venv, the package).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := espeak-ng fluidsynth fluid-soundfont-gm

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	bash scripts/install-apt.sh $(APT_PACKAGES)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -e '.[dev]'
	touch $@

demo: setup
	$(PY) -m zoo.cli demo --out out/demo

test: setup
	$(PY) -m pytest
	PY=$(PY) bash scripts/check_wheel.sh

bench: setup
	for script in benchmarks/[a-z]*.py; do \
		case $$script in benchmarks/report.py) continue;; esac; \
		echo "== $$script"; $(PY) $$script || exit 1; \
	done

clean:
	rm -rf $(VENV) out
