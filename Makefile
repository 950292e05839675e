# `make train` and `make test` set everything up on first use; later calls skip the install.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup train test test-all bench ui mlflow-server generate docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: this version is a local CPU wheel; a range pulls a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# insightface ships real faces used by the built-in data; its metadata asks for
	# opencv-python, which would overwrite the headless cv2, so it comes without deps
	# (the ones it needs are already project dependencies).
	$(PY) -m pip install -q --no-deps insightface==2.1
	touch $(STAMP)

train: setup
	$(PY) train.py $(ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -m "slow or not slow" $(PYTEST_ARGS)

generate: setup
	$(VENV)/bin/mer generate data/builtin_smic

# The documentation site (docs/, mkdocs.yml) into site/; --strict fails on a broken link or anchor.
docs: setup
	$(VENV)/bin/mkdocs build --strict

# The Keras/TensorFlow peer and tcmalloc are for the benchmark only: training never needs them.
bench: setup
	$(PY) -m pip install -q -e '.[peer]'
	@if ldconfig -p | grep -q libtcmalloc_minimal; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1; then \
		echo "installed Debian's libtcmalloc-minimal4"; \
	else echo "tcmalloc unavailable (Debian: libtcmalloc-minimal4): benchmarking with the system allocator"; fi
	$(PY) benchmarks/run.py

ui: setup
	PATH=$(VENV)/bin:$$PATH $(VENV)/bin/mer ui --tracking-uri sqlite:///outputs/mlflow.db --port 5000

# A shared tracking server: PostgreSQL (Debian's package, installed as root when missing)
# and MLflow on 127.0.0.1:5001; settings and folders: scripts/mlflow-server.sh.
mlflow-server: setup
	PATH=$(VENV)/bin:$$PATH scripts/mlflow-server.sh serve $(ARGS)

clean:
	rm -rf outputs data/cache
