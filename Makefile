# neuronatlas — set up, test, demo.
#   make test   creates .venv on first use and runs ruff + the whole pytest suite
#   make demo   creates .venv on first use and maps the bundled MiniLM over Python's own docs
PYTHON ?= python3
VENV ?= .venv
# torch first, from an explicit spec, so no multi-GB CUDA build is pulled on CPU machines.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ATLAS ?= atlases/minilm-pydocs

export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: venv test lint demo view bench browser-deps clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Debian's Chromium for the viewer's browser tests (Playwright drives /usr/bin/chromium).
browser-deps:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null) \
		|| echo "could not install chromium; browser tests will be skipped"; \
	fi

lint: venv
	$(BIN)/ruff check neuronatlas tests benchmarks
	$(BIN)/ruff format --check neuronatlas tests benchmarks

test: venv browser-deps lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

demo: venv
	$(BIN)/neuronatlas map --out $(ATLAS)
	@echo
	$(BIN)/neuronatlas info $(ATLAS)
	@echo
	@echo "Browse it:  $(BIN)/neuronatlas view $(ATLAS)"
	@echo "Query it:   $(BIN)/neuronatlas query $(ATLAS) \"select site, count(*) from units group by site\""

view: venv
	$(BIN)/neuronatlas view $(ATLAS)

# Benchmarks report figures (docs/benchmarks.md); they are scripts, not tests. Run on a quiet machine.
bench: venv
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python benchmarks/bench_record.py
	$(BIN)/python benchmarks/bench_map.py
	$(BIN)/python benchmarks/bench_stats.py
	$(BIN)/python benchmarks/bench_store.py
	$(BIN)/python benchmarks/bench_viewer.py
	$(BIN)/python benchmarks/bench_sae.py
	$(BIN)/python benchmarks/bench_probes.py
	$(BIN)/python benchmarks/bench_heads.py
	$(BIN)/python benchmarks/bench_steer.py
	$(BIN)/python benchmarks/bench_compare.py
	$(BIN)/python benchmarks/bench_encoding.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
