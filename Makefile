# Two commands on a fresh machine:
#   make demo   set up .venv (CPU torch first), build and install the project, run the demo
#   make test   the same setup, then the whole test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# The CPU build of torch lies on disk; an unpinned torch would pull a multi-GB CUDA build.
TORCH  := torch==2.13.0
BUILD_DEPS := scikit-build-core pybind11 cmake ninja

.PHONY: setup native-deps crypten demo test bench-gemm train-default clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# OpenSSL's libcrypto headers (the base OT runs over P-256 with its EC API): Debian libssl-dev,
# installed here when root, else named in a one-line error.
native-deps:
	@if ! echo '#include <openssl/ec.h>' | $(CXX) -E -x c++ - >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && apt-get install -y -qq libssl-dev) >/dev/null; \
	  else echo "error: OpenSSL headers are missing: install the Debian package libssl-dev (apt-get install libssl-dev)" >&2; exit 1; fi; \
	fi

# Always refreshes: pip skips what is installed; the native build is incremental (build/).
setup: native-deps $(PY)
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet $(BUILD_DEPS)
	$(PIP) install --quiet --no-build-isolation -e '.[dev]'

# The CrypTen baseline of `pi bench` (not a dependency of the project: --no-deps, see the
# script). The README quotes CrypTen ratios, so `make test` stops here if it cannot be installed
# and its tests must run (PI_REQUIRE_CRYPTEN=1 turns their skip into a failure).
crypten: setup
	@bash benchmarks/setup_crypten.sh $(VENV) || { echo "error: the CrypTen baseline did not install (see above); make test needs it because the README quotes CrypTen ratios" >&2; exit 1; }

demo: setup
	$(VENV)/bin/pi demo

test: setup crypten
	PI_REQUIRE_CRYPTEN=1 $(PY) -m pytest -q

bench-gemm: setup
	$(VENV)/bin/pi bench gemm --json benchmarks/results/gemm.json

train-default: setup
	$(PY) demos/train_default.py

clean:
	rm -rf build $(VENV) .pytest_cache
