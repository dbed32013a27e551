# micwire: `make demo` and `make test` do all set-up on a fresh Debian/Ubuntu machine:
# system libraries (apt, with sudo when not root), a virtualenv in .venv, the package.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# libportaudio2: what sounddevice loads; libopus0: what opuslib loads; jackd2: the paced
# virtual sound card the tests and the latency benchmark run on (tests/integration/rig.py);
# chromium: the real browser the web pages are tested in (driven by Playwright; its own
# browser download cannot be reached from the test machines).
# libsndfile (WAV/FLAC/Ogg) ships inside the soundfile wheel, LAME inside lameenc's.
# faketime: a sender whose wall clock is seconds off (the clock measurement's tests).
SYSTEM_PACKAGES := libportaudio2 libopus0 jackd2 chromium faketime
# what only a benchmark needs: GStreamer (the comparison in bench/capacity.py), HAProxy
# (bench/haproxy.py)
GSTREAMER_PACKAGES := gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
EXTRA_PACKAGES ?=
PYTEST_ARGS ?=

.PHONY: all setup system demo test test-serial test-fast lint bench bench-capacity bench-haproxy clean

all: test

system:
	@missing=""; \
	for p in $(SYSTEM_PACKAGES) $(EXTRA_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "please install:$$missing (no apt-get here)"; exit 1; fi; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing system packages:$$missing"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: system $(VENV)/.installed

demo: setup
	$(BIN)/micwire demo

# the suite on parallel workers (pytest-xdist): mostly waiting on real-time audio, so more
# workers than cores. Tests that need a quiet machine run one after another in one worker,
# first (tests/conftest.py). MICWIRE_TEST_STRICT=1: a skipped test fails (a test that
# cannot run here, e.g. a tmpfs without root, must not pass silently); STRICT=0 lets it skip
TEST_WORKERS ?= 6
STRICT ?= 1
test: setup
	MICWIRE_TEST_STRICT=$(STRICT) $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup \
	  --no-loadscope-reorder $(PYTEST_ARGS)

# one test after another in this process, for debugging (pdb, -x, output as it comes)
test-serial: setup
	MICWIRE_TEST_STRICT=$(STRICT) $(BIN)/python -m pytest -p no:xdist $(PYTEST_ARGS)

# the pure core only: seconds, no devices
test-fast: setup
	$(BIN)/python -m pytest tests/common $(PYTEST_ARGS)

# latency benchmark on a JACK dummy server (prints p50/p95/max and glitches per config)
bench: setup
	$(BIN)/python bench/latency.py --seconds 60

# CPU per stream against GStreamer on the same packets; sender cost (README "Capacity")
bench-capacity:
	$(MAKE) setup EXTRA_PACKAGES="$(GSTREAMER_PACKAGES)"
	$(BIN)/python bench/capacity.py
	$(BIN)/python bench/capacity.py --senders

# 30 senders through HAProxy to 3 receivers, one killed and restarted (docs/DEPLOY.md)
bench-haproxy:
	$(MAKE) setup EXTRA_PACKAGES=haproxy
	$(BIN)/python bench/haproxy.py

# ruff, and mypy --strict on the product's folders (tools/typecheck.py)
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/typecheck.py

clean:
	rm -rf $(VENV) micwire-demo .pytest_cache .mypy_cache
