# The two set-up commands of the README: `make demo` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
HOST ?= localhost

.PHONY: setup demo test lint stop

setup:
	@bash scripts/bootstrap.sh

demo: setup  ## install, build + start the embedded STAC API, open the dashboard
	$(PY) -m cropcore catalog serve
	$(PY) -m streamlit run app.py --server.port $(PORT) --server.address $(HOST)

test: setup  ## install, then run the whole test suite (starts its own STAC API)
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .

stop:
	$(PY) -m cropcore catalog stop
