# selfstudy: two commands set up a fresh machine.
#   make demo   run the quick study on the embedded defaults and write its report
#   make test   run the test suite (make test-all adds the three tests of over a minute each)
#   make bench  run the benchmarks (one JSON line each)
#
# TORCH_SPEC chooses the torch build. The default is the CPU build this project is developed on;
# on a GPU machine use e.g.  make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
EGL_PKGS   := libegl1 libgl1-mesa-dri libegl-mesa0

.PHONY: demo test test-all test-fast bench egl venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

# The renderer needs an EGL driver. Mesa's gives software rendering anywhere; NVIDIA's driver ships its own.
egl:
	@if ldconfig -p 2>/dev/null | grep -q 'libEGL_mesa.so\|libEGL_nvidia.so'; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "installing EGL: $(EGL_PKGS)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(EGL_PKGS)) >/dev/null; \
	else \
		echo "selfstudy needs an EGL driver; run:  sudo apt-get install -y $(EGL_PKGS)"; exit 1; \
	fi

demo: venv egl
	$(VENV)/bin/selfstudy study run quick

# The whole suite but the three tests of over a minute (marked long): under 10 minutes on 2 cores.
test: venv egl
	$(PY) -m pytest -q -m "not long" tests

test-all: venv egl
	$(PY) -m pytest -q tests

test-fast: venv egl
	$(PY) -m pytest -q -m "not slow" tests

bench: venv egl
	@for b in benchmarks/*.py; do $(PY) $$b || exit $$?; done

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
