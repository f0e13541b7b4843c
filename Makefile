# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell $(PYTHON) -c "import hashlib,sys;print(hashlib.sha256(open('requirements.txt','rb').read()).hexdigest()[:12])")
PORT ?= 8501

.PHONY: install run test lint typecheck format bench clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python -m streamlit run dashboard.py --server.port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m pip install --quiet adversarial-robustness-toolbox
	$(BIN)/python -m bench.engine
	$(BIN)/python -m bench.recap
	$(BIN)/python -m bench.adaptive
	$(BIN)/python -m bench.dashboard
	$(BIN)/python -m bench.worker_fairness

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs
