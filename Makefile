# minginx-cffi: build, test, bench, clean.
PYTHON ?= python3
CC ?= gcc
STRICT = -std=gnu11 -O2 -Wall -Wextra -Werror -fsyntax-only
CSRC := $(wildcard csrc/*.c)

.PHONY: all build check-c test bench clean

all: build

# The C engine on its own with every warning an error, then the cffi module in place.
check-c:
	@for f in $(CSRC); do $(CC) $(STRICT) $$f || exit 1; done
	@echo "csrc: builds with -Wall -Wextra -Werror"

build: check-c
	$(PYTHON) -m pip install -q -e '.[test]'

test: build
	$(PYTHON) -m pytest

# wrk and nginx from Debian, the Python baselines in bench/.venv; then every workload.
bench: build bench/.venv
	@command -v wrk >/dev/null && command -v nginx >/dev/null || \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light) || \
	    echo "bench: could not install wrk/nginx; the harness skips what is missing"
	$(PYTHON) bench/run.py

bench/.venv:
	$(PYTHON) -m venv bench/.venv
	bench/.venv/bin/pip install -q -r bench/requirements.txt

clean:
	rm -rf build dist *.egg-info minginx_cffi/_minginx*.so minginx_cffi/_minginx.c \
	       csrc/*.o minginx_cffi/*.o .pytest_cache bench/results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
