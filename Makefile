# Two entry points for a new user: `make demo` and `make test`. Both build .venv when it is missing and
# install with constraints.txt, so pip never resolves an unpinned torch.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PIP_INSTALL := $(PIP) install --disable-pip-version-check -c constraints.txt
PYTEST_ARGS ?=
BENCH_ARGS ?=
DEMO_ARGS ?=

.PHONY: demo test install install-dev sysdeps lint bench clean

demo: $(VENV)/.installed
	$(VENV)/bin/auditkit demo $(DEMO_ARGS)

test: $(VENV)/.installed-dev sysdeps
	$(PY) -m pytest $(PYTEST_ARGS)

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check --quiet --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml constraints.txt
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-dev: $(PY) pyproject.toml constraints.txt
	$(PIP_INSTALL) -e '.[dev]'
	touch $@ $(VENV)/.installed

# Browser tests drive Debian's chromium; report tests turn PDFs into PNGs with poppler's pdftoppm.
sysdeps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v pdftoppm >/dev/null 2>&1 || missing="$$missing poppler-utils"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing$$missing (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "warning: missing$$missing and not root; tests that need them will be skipped" >&2; \
	  fi; \
	fi

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check auditkit tests benchmarks dashboards

bench: $(VENV)/.installed-dev
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
