# The two commands of the README:
#   make demo   set up (first time) and run the main job
#   make test   set up (first time) and run the test suite
# The virtual environment is cached outside the clone, keyed on setup.py (which holds the pins).
PYTHON ?= python3
VENV_ROOT ?= $(HOME)/.cache/perception_nodes
SETUP_HASH := $(shell sha256sum setup.py | cut -c1-12)
VENV ?= $(VENV_ROOT)/venv-$(SETUP_HASH)
BIN := $(VENV)/bin
OUT ?= ovp-demo

.PHONY: venv install demo test bench lint clean-venv
venv: $(VENV)/.installed

$(VENV)/.installed: setup.py
	@mkdir -p $(VENV_ROOT)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

# Re-point the editable install at this checkout (fast: dependencies are already there).
install: venv
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .

demo: install
	$(BIN)/ovp demo --out $(OUT)

test: install
	$(BIN)/python -m pytest -q

bench: install
	for b in bench/*_bench.py bench/fusion_quality.py; do [ -f $$b ] && $(BIN)/python $$b; done

lint: install
	$(BIN)/python -m flake8 perception_nodes training test bench launch

clean-venv:
	rm -rf $(VENV)
