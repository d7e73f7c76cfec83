# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-oldest install clean

# The oldest transformers the project supports (the GPU image's), beside the newest installed in $(VENV): the tests
# that reach into transformers' generation, caches and attention run against it too.
OLDEST_TRANSFORMERS ?= 5.17.0
OLDEST := $(VENV)/oldest-transformers
OLDEST_STAMP := $(OLDEST)/.installed
OLDEST_TESTS := tests/test_static_cache.py tests/test_fastpath.py tests/test_attention_choice.py tests/test_multi.py \
	tests/test_packed.py tests/test_compile_blocks.py tests/test_loop_fastpath.py tests/test_vl_backbone.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  # replaces the previous demo run in runs/demo
	$(BIN)/dept-vl demo --overwrite $(DEMO_ARGS)

test: $(STAMP) $(OLDEST_STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-oldest

$(OLDEST_STAMP): $(STAMP)
	rm -rf $(OLDEST)
	$(BIN)/python -m pip install --quiet --no-deps --target $(OLDEST) transformers==$(OLDEST_TRANSFORMERS) \
		"huggingface-hub>=1.5,<2" httpx httpcore certifi
	touch $(OLDEST_STAMP)

test-oldest: $(OLDEST_STAMP)
	PYTHONPATH=$(OLDEST) $(BIN)/python -c "import transformers; assert transformers.__version__ == '$(OLDEST_TRANSFORMERS)'"
	PYTHONPATH=$(OLDEST) $(BIN)/python -m pytest -q -p no:cacheprovider $(OLDEST_TESTS)

clean:
	rm -rf $(VENV) build *.egg-info
