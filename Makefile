# The two commands a newcomer needs: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Re-install whenever the dependency list changes.
INSTALLED := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
ARTIFACTS ?= artifacts

.PHONY: setup assets demo bench test test-slow test-jvm lint clean

setup: $(INSTALLED)

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# One resolve for everything (installing the export stack in stages breaks typing-extensions),
	# held to the known-good versions in constraints.txt. uv does it in ~15 s where pip took 2.3 min
	# (the first `make demo` is timed); it gets pip's package sources from tools/uv_sources.py.
	# Should uv fail, pip does the same install. -qq: a machine's pip configuration may name package
	# sources that do not hold uv, which pip warns about on every run; its errors still show.
	$(BIN)/python -m pip install -qq -c constraints.txt uv \
	  && $(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e ".[all,dev]" \
	       $$($(BIN)/python tools/uv_sources.py) \
	  || { echo "uv failed: installing with pip"; \
	       $(BIN)/python -m pip install --quiet --upgrade pip \
	       && $(BIN)/python -m pip install --quiet -c constraints.txt -e ".[all,dev]"; }
	rm -f $(VENV)/.installed-*
	touch $@

assets: setup
	$(BIN)/siglip2-sdk assets

demo: setup assets
	$(BIN)/siglip2-sdk demo --out $(ARTIFACTS)

# Issue #8's benchmark. The demo's student gives the accuracy retention, so the demo runs first
# (reused when there); the B/32 bundles are exported once (over an hour on 2 cores) and kept in
# artifacts/bench; the benchmark itself then takes ~13 minutes.
bench: demo
	$(BIN)/python benchmarks/b32.py --student $(ARTIFACTS)/student/final --data $(ARTIFACTS)/data

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup assets lint
	$(BIN)/python -m pytest -q
	PYTHON=$(BIN)/python android_demo/run-jvm-tests

# The Android demo's pure-JVM core (Debian kotlinc + JUnit 4; installs them when missing and root).
test-jvm: setup assets
	PYTHON=$(BIN)/python android_demo/run-jvm-tests

test-slow: setup assets
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) $(ARTIFACTS) .pytest_cache .ruff_cache
