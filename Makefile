# minginx-cffi: build, test, bench, clean.
PYTHON ?= python3
CC ?= gcc
STRICT = -std=gnu11 -O2 -Wall -Wextra -Werror -fsyntax-only
CSRC := $(wildcard csrc/*.c)

.PHONY: all build check-c test test-asan fuzz bench clean readme-usage exercise exercises-ci

all: build

# The C engine on its own with every warning an error, then the cffi module in place.
check-c:
	@for f in $(CSRC); do $(CC) $(STRICT) $$f || exit 1; done
	@echo "csrc: builds with -Wall -Wextra -Werror"

# Developers build with MINGINX_WERROR=1 (warnings are errors); a user's pip install does not.
# The engines built in place before go first: Python imports _minginx.cpython-3XX-*.so (which
# `python3 minginx_cffi/_build.py` writes) before the install's _minginx.abi3.so, so a stale one
# would be what runs (tests/test_docs_commands.py, make_build).
build: check-c
	rm -f minginx_cffi/_minginx*.so
	MINGINX_WERROR=1 $(PYTHON) -m pip install -q -e '.[test]'

test: build
	$(PYTHON) -m pytest -n auto

# The C engine under AddressSanitizer + UndefinedBehaviorSanitizer (with the fiber
# annotations around every context switch, csrc/coroutine.c): a copy of the tree is built
# in build/asan and the whole suite runs on it, C engine only (on both I/O backends: the
# cffi and cffi-uring engines of tests/conftest.py): the runtime, static files,
# and the handler bridge (test_handlers.py, test_wsgi.py, the CLI's start-up failures in
# subprocesses, which inherit the preload).  -rs lists what was skipped (test_wsgi.py
# needs flask), so a hole in the coverage shows.  In parallel workers (pytest -n auto) where
# pytest-xdist is installed (the test extra): ASan's servers are slower, the tests still wait.
XDIST = $(shell $(PYTHON) -c "import xdist" 2>/dev/null && echo "-n auto")
ASAN_RT = $(shell $(CC) -print-file-name=libasan.so):$(shell $(CC) -print-file-name=libubsan.so)
test-asan:
	rm -rf build/asan && mkdir -p build/asan
	cp -r csrc minginx_cffi tests docs tools README.md pyproject.toml setup.py MANIFEST.in LICENSE build/asan/
	rm -f build/asan/minginx_cffi/_minginx*.so
	cd build/asan && MINGINX_WERROR=1 MINGINX_SANITIZE=asan $(PYTHON) minginx_cffi/_build.py > build.log 2>&1 || (cat build.log; exit 1)
	cd build/asan && LD_PRELOAD=$(ASAN_RT) MINGINX_ENGINES=cffi,cffi-uring MINGINX_SANITIZED=1 MINGINX_TEST_SWITCH=fast \
	    ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:allow_user_segv_handler=1 \
	    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    $(PYTHON) -m pytest -q -rs -p no:cacheprovider $(XDIST) tests

# Fuzz through cffi with atheris, FUZZ_SECONDS per target: parse_http (tests/fuzz_parse.py),
# the chunked decoder against the port's (tests/fuzz_chunked.py), and the handler response
# path, C's head writer against the port's (tests/fuzz_response.py); each file states its
# invariant. The extension is rebuilt with clang for libFuzzer coverage and ASan.
FUZZ_SECONDS ?= 60
FUZZ_ENV = LD_PRELOAD=$$($(PYTHON) -c "import atheris,os;print(os.path.join(atheris.path(),'asan_with_fuzzer.so'))") \
	    ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1
fuzz:
	$(PYTHON) -m pip install -q atheris
	rm -rf build/fuzz && mkdir -p build/fuzz/corpus build/fuzz/chunked_corpus build/fuzz/response_corpus
	cp -r csrc minginx_cffi tests build/fuzz/ && cp tests/fuzz_corpus/* build/fuzz/corpus/
	cp tests/fuzz_chunked_corpus/* build/fuzz/chunked_corpus/
	cp tests/fuzz_response_corpus/* build/fuzz/response_corpus/
	rm -f build/fuzz/minginx_cffi/_minginx*.so
	cd build/fuzz && CC=clang LDSHARED="clang -shared" MINGINX_SANITIZE=fuzz \
	    $(PYTHON) minginx_cffi/_build.py > build.log 2>&1 || (cat build.log; exit 1)
	cd build/fuzz && $(FUZZ_ENV) PYTHONPATH=. $(PYTHON) tests/fuzz_parse.py -max_total_time=$(FUZZ_SECONDS) corpus
	cd build/fuzz && $(FUZZ_ENV) PYTHONPATH=. $(PYTHON) tests/fuzz_chunked.py -max_total_time=$(FUZZ_SECONDS) chunked_corpus
	cd build/fuzz && $(FUZZ_ENV) PYTHONPATH=. $(PYTHON) tests/fuzz_response.py -max_total_time=$(FUZZ_SECONDS) response_corpus

# The exercises of docs/walkthrough.md, section 6: `make exercise N=3` runs exercise 3's check
# (tests/exercises/test_exercise_3.py; the engine is rebuilt first, for the exercises in C).
# exercises-ci: every check fails on the tree as it is and passes with its solution,
# docs/solutions/exercise-N.patch, applied in a temporary copy (tools/exercises_ci.py).
exercise:
	@test -n "$(N)" || (echo "usage: make exercise N=3"; exit 2)
	mkdir -p build && MINGINX_WERROR=1 $(PYTHON) minginx_cffi/_build.py > build/exercise-build.log 2>&1 || \
	    (cat build/exercise-build.log; exit 1)
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/exercises/test_exercise_$(N).py

exercises-ci:
	mkdir -p build && MINGINX_WERROR=1 $(PYTHON) minginx_cffi/_build.py > build/exercise-build.log 2>&1 || \
	    (cat build/exercise-build.log; exit 1)
	$(PYTHON) tools/exercises_ci.py

# README's usage block from `minginx-cffi serve --help` (tools/readme_usage.py; rerun after
# adding a flag: tests/test_readme_usage.py fails while they disagree).
readme-usage:
	$(PYTHON) tools/readme_usage.py

# wrk and nginx from Debian, the Python baselines in bench/.venv; then every workload.
bench: build bench/.venv
	@for t in wrk nginx h2o lighttpd ab; do command -v $$t >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        wrk nginx-light h2o lighttpd apache2-utils && \
	     (systemctl stop nginx h2o lighttpd 2>/dev/null; true)) || \
	    echo "bench: could not install the baseline servers; the harness skips what is missing"; \
	fi
	$(PYTHON) bench/run.py --readme

bench/.venv:
	$(PYTHON) -m venv bench/.venv
	bench/.venv/bin/pip install -q -r bench/requirements.txt

clean:
	rm -rf build dist *.egg-info minginx_cffi/_minginx*.so minginx_cffi/_minginx.c \
	       csrc/*.o minginx_cffi/*.o .pytest_cache
	git clean -qfX bench/results 2>/dev/null || true   # results not committed (README's are)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
