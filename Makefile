# Two commands on a fresh clone: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: install system-packages demo test synth bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# pip byte-compiles what it installs one file after another (about 70 s of 110 here);
	# compileall does the same on every core. Leaving it to imports made the tests slower.
	$(BIN)/python -m pip install --quiet --no-compile -e '.[dev]'
	$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib || true  # files pip would skip too
	rm -f $(VENV)/.installed-* && touch $@

# Debian's packages the local pipeline runs: espeak-ng speaks summaries (PAGEMILL_SPEECH=local).
system-packages:
	command -v espeak-ng >/dev/null || (apt-get update -qq && apt-get install -y -qq espeak-ng)

install: $(STAMP) system-packages

node_modules/.bin/cdk: package.json
	npm install --no-audit --no-fund --silent
	touch $@

demo: install
	$(BIN)/pagemill demo

# The console's browser test drives Debian's Chromium (Playwright's own download needs the internet).
/usr/bin/chromium:
	apt-get update -qq && apt-get install -y -qq chromium

test: install /usr/bin/chromium
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

bench: install
	$(BIN)/python -m bench.bench_db_write
	$(BIN)/python bench/bench_clip.py
	$(BIN)/python -m bench.bench_extract
	$(BIN)/python -m bench.bench_extract_pages
	$(BIN)/python -m bench.bench_plan
	$(BIN)/python -m bench.bench_memory
	$(BIN)/python -m bench.bench_hnsw
	$(BIN)/python -m bench.bench_e2e
	$(BIN)/python -m bench.scale_model

synth: install node_modules/.bin/cdk
	node_modules/.bin/cdk synth --output cdk.out --quiet  # the app: cdk.json, the project's venv

clean:
	rm -rf cdk.out pagemill-out .pytest_cache
