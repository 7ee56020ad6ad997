# Set-up, main job and tests. Every target creates the virtual environment first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
RUNS ?= runs

.PHONY: install demo test test-slow clean

install: $(VENV)/.installed

# torch is pinned to the CPU/GPU build pair that pip finds on this machine's disk; a plain
# "torch" requirement would download several GB. The package and its extras come next.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -e ".[dev]"
	touch $@

# The main job: build a data set, train, index, retrieve, generate, evaluate and write
# runs/demo/report.html. DATA_DIR=../shared/data runs it on the real paired digits instead
# of scikit-learn's bundled digits.
demo: install
	$(BIN)/polyfuse demo --out $(RUNS)/demo $(if $(DATA_DIR),--data-dir $(DATA_DIR))

test: install
	$(BIN)/pytest -q

test-slow: install
	$(BIN)/pytest -q -m slow

clean:
	rm -rf $(VENV) $(RUNS) .pytest_cache
