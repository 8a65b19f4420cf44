# The two commands of the README:
#   make demo   set up (first time) and run the main job
#   make test   set up (first time) and run the test suite
#
# The virtual environment holds the third-party dependencies only (the pins of setup.py, with the test
# extra). It is cached outside the clone, keyed on setup.py, and shared by every checkout with the same
# pins; nothing of a checkout is ever installed into it. Each checkout runs its own code from its own
# tree (PYTHONPATH=<this checkout>), so one clone's `make test` can never re-point another's, and a
# deleted clone leaves nothing behind. A first run creates the environment (under a lock, so two
# clones starting together build it once); later runs only check a marker file.
PYTHON ?= python3
VENV_ROOT ?= $(HOME)/.cache/perception_nodes
SETUP_HASH := $(shell sha256sum setup.py | cut -c1-12)
VENV ?= $(VENV_ROOT)/venv-$(SETUP_HASH)
BIN := $(VENV)/bin
OUT ?= ovp-demo
# This checkout first on the import path, ahead of anything an older Makefile installed in the venv.
RUN := PYTHONPATH="$(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))" $(BIN)/python

# Prints setup.py's install_requires and test extra, one per line (setup() replaced by a printer).
REQUIREMENTS := import runpy, setuptools; setuptools.setup = lambda **kw: print(chr(10).join(\
  kw[\"install_requires\"] + kw[\"extras_require\"][\"test\"])); runpy.run_path(\"setup.py\")

.PHONY: venv install demo test bench lint clean-venv
venv: $(VENV)/.installed

# Dependencies only: setup.py's install_requires + the test extra, read from setup.py itself. The venv's
# name carries setup.py's hash, so a complete one (marker present) is never rebuilt; no prerequisite on
# setup.py's mtime, which a fresh clone always sets to "now". A venv without its marker is the remains
# of an interrupted build (the lock keeps out a build in progress) and is rebuilt from scratch.
$(VENV)/.installed:
	@mkdir -p $(VENV_ROOT)
	@flock $(VENV_ROOT)/.lock-$(SETUP_HASH) sh -c '\
	  set -e; \
	  if [ -f $(VENV)/.installed ]; then exit 0; fi; \
	  rm -rf $(VENV); \
	  $(PYTHON) -m venv $(VENV); \
	  $(BIN)/python -m pip install --quiet --upgrade pip; \
	  $(BIN)/python -c "$(REQUIREMENTS)" > $(VENV)/requirements.txt; \
	  $(BIN)/python -m pip install --quiet -r $(VENV)/requirements.txt; \
	  touch $(VENV)/.installed'

# Kept for old habits: there is nothing to install from the checkout any more.
install: venv

demo: venv
	$(RUN) -m perception_nodes.cli.main demo --out $(OUT)

test: venv
	$(RUN) -m pytest -q

bench: venv
	for b in bench/*_bench.py bench/fusion_quality.py; do [ -f $$b ] && $(RUN) $$b; done

lint: venv
	$(RUN) -m flake8 perception_nodes training test bench launch

clean-venv:
	rm -rf $(VENV)
