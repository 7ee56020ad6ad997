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

# The main job: build the bundled handwritten-digits data set, train, encode the test split.
demo: install
	$(BIN)/polyfuse datasets build sklearn-digits --out $(RUNS)/sklearn-digits/data
	$(BIN)/polyfuse train --manifest $(RUNS)/sklearn-digits/data/train.jsonl \
		--config $(RUNS)/sklearn-digits/data/polyfuse-train.json --out $(RUNS)/sklearn-digits/model
	$(BIN)/polyfuse encode --model $(RUNS)/sklearn-digits/model \
		--manifest $(RUNS)/sklearn-digits/data/test.jsonl --out $(RUNS)/sklearn-digits/test-latents.npz

test: install
	$(BIN)/pytest -q

test-slow: install
	$(BIN)/pytest -q -m slow

clean:
	rm -rf $(VENV) $(RUNS) .pytest_cache
