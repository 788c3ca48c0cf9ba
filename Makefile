# Set-up is implicit: every target below installs into .venv first if needed.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
DATA    ?= ../shared/data
EPOCHS  ?= 20
STAMP   := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: install browser test run bench bench-gpu bench-bmi reproduce-tishby reproduce-saxe ui screenshots server clean

install: $(STAMP)

# torch 2.14.1 / torchvision 0.29.1 install from the machine's local wheel cache.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/pip install --quiet -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/python -c "import ibcli.cli, torch, torchvision, mlflow"
	@$(MAKE) --no-print-directory browser
	touch $(STAMP)

# Static figures (ibcli plot --format png,svg,pdf) go through plotly's kaleido, which drives a
# Chromium-family browser. As root (CI) Debian's chromium is installed when none is found;
# otherwise a note says what to install. HTML figures need no browser.
browser:
	@test -x $(BIN)/python || { echo "run make install first"; exit 1; }
	@if $(BIN)/python -c "import sys; from ibcli.figure_files import find_browser; sys.exit(find_browser() is None)"; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium (static figure export)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "note: apt-get install chromium failed: PNG/SVG/PDF figures need a Chromium-family browser; HTML works without"; \
	else echo "note: no Chromium-family browser: for PNG/SVG/PDF figures run \`sudo apt-get install chromium\` (or install Google Chrome); HTML works without"; fi

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The main job: train the MLP on MNIST, estimate MI by binning and KDE, plot into figures/mlp.
# Progress bars while it works (on a terminal); at the end one summary: test accuracy, each
# method's per-layer I(X;T), the figure paths and the command that opens the MLflow UI.
run: $(STAMP)
	@set -e; \
	id=$$($(BIN)/ibcli train --model mlp --data-dir $(DATA) --epochs $(EPOCHS) --json | $(BIN)/python -c "import json,sys; print(json.load(sys.stdin)['run_id'])"); \
	$(BIN)/ibcli mi $$id --method binning --json > /dev/null; \
	$(BIN)/ibcli mi $$id --method kde --json > /dev/null; \
	$(BIN)/ibcli plot $$id --output figures/mlp --json > /dev/null; \
	$(BIN)/ibcli show $$id --summary

# Speed figures against their targets (benchmarks/README.md): about 4.5 minutes on 2 cores.
bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/bench.py --data-dir $(DATA)

# `ibcli train --device cuda` against a plain loop and the CUDA-graph floor (benchmarks/README.md):
# about 2-3 minutes on one GPU. On the lent GPU machine: bash .gpu/run.sh python3 benchmarks/bench_gpu.py
bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/bench_gpu.py --data-dir $(DATA)

# The bench extra (infomeasure, the KSG reference) goes into the same venv.
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]' 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/python -c "import infomeasure"
	touch $(BENCH_STAMP)

# KSG's MAE on the 40 tasks of Czyz et al. 2023 (benchmarks/README.md): samples from the benchmark's
# own venv .venv-bmi (network on first set-up), cached in .cache/bmi. Not part of `make test`.
bench-bmi: $(STAMP)
	$(BIN)/python benchmarks/bmi_samples.py
	$(BIN)/python benchmarks/bmi_mae.py --method kraskov

# The papers' information planes on the 12-bit task, averaged over seeds (ibcli reproduce):
# figures (HTML) and summary.txt in results/tishby/ and results/saxe/, each under 30 minutes on 2 cores.
# REPRO_ARGS overrides the setup, e.g. REPRO_ARGS="--seeds 0-9 --epochs 4000".
reproduce-tishby: $(STAMP)
	$(BIN)/ibcli reproduce tishby --out results/tishby $(REPRO_ARGS)

reproduce-saxe: $(STAMP)
	$(BIN)/ibcli reproduce saxe --out results/saxe $(REPRO_ARGS)

ui: $(STAMP)
	$(BIN)/ibcli ui

# Every figure and the MLflow UI pages in headless Chromium (a demo store on the 12-bit task,
# a few minutes): PNGs in figures/screenshots/ to look at. Skips in one line without a browser.
screenshots: $(STAMP)
	$(BIN)/python scripts/screenshots.py --out figures/screenshots

# A shared tracking server (README: "A lab's shared store"): MLflow on PostgreSQL with proxied
# artifacts, e.g. make server DB=postgresql://ibcli:PASSWORD@db.lab:5432/ibcli ARTIFACTS=/srv/ibcli/artifacts
# (HOST=0.0.0.0 to serve other machines; SERVER_ARGS for --allowed-hosts, --basic-auth, ...).
DB        ?= $(IBCLI_SERVER_BACKEND)
ARTIFACTS ?= server-artifacts
HOST      ?= 127.0.0.1
PORT      ?= 5000
server: $(STAMP)
	$(BIN)/ibcli server --backend-store-uri "$(DB)" --artifacts-destination "$(ARTIFACTS)" --host $(HOST) --port $(PORT) $(SERVER_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
