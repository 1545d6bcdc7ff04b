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

bench: build
	$(PYTHON) bench/run.py

clean:
	rm -rf build dist *.egg-info minginx_cffi/_minginx*.so minginx_cffi/_minginx.c \
	       csrc/*.o minginx_cffi/*.o .pytest_cache bench/results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
