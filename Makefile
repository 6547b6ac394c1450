# diffog_ros — one command each: `make demo` (main job) and `make test` (all tests).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PIP_QUIET := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
export MUJOCO_GL ?= egl
export PYTHONUNBUFFERED := 1

.PHONY: help setup demo test lint format bench clean

help:
	@echo "make demo   - set up, then run the main job on the simulated robot"
	@echo "make test   - set up, then run lint and all tests"
	@echo "make setup  - create .venv, install pinned deps, install diffog_ros, build ros2_ws"
	@echo "make bench  - run the benchmarks (prints ratios against qpth)"

$(VENV)/.deps: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt $(PIP_QUIET)
	touch $@

$(VENV)/.pkg: $(VENV)/.deps src/diffog_ros/setup.py src/diffog_ros/setup.cfg src/diffog_ros/package.xml
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e src/diffog_ros $(PIP_QUIET)
	touch $@

# Everything colcon installs: the Python package and the share files (config/, launch/, models/).
WS_INPUTS := $(shell find src/diffog_ros config launch models -type f -not -path '*/__pycache__/*' \
	-not -path '*.egg-info/*' -not -path 'src/diffog_ros/build/*' 2>/dev/null)

ros2_ws/install/.built: $(VENV)/.pkg $(WS_INPUTS)
	cd ros2_ws && $(abspath $(VENV))/bin/colcon --log-base log build --base-paths ../src --build-base build --install-base install $(COLCON_FLAGS) > build.log 2>&1 || { cat build.log; exit 1; }
	touch $@

setup: $(VENV)/.pkg ros2_ws/install/.built

demo: setup
	$(VENV)/bin/diffog-ros demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) ros2_ws/build ros2_ws/install ros2_ws/log ros2_ws/build.log
