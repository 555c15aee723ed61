# The two commands: `make demo` (the main job) and `make test` (the suite; .ci/run calls it).
PYTHON ?= python3
VENV := .venv
PIP_LOG := $(VENV)/pip-install.log

.PHONY: setup check test docs demo bench system down clean

# Our environment in .venv/, installed from the committed constraints file.
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints/app.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "installing .venv from constraints/app.txt (log: $(PIP_LOG))"
	@$(VENV)/bin/pip install --disable-pip-version-check -q -c constraints/app.txt -e '.[test]' \
		> $(PIP_LOG) 2>&1 || { tail -n 30 $(PIP_LOG); exit 1; }
	@touch $@

# PostgreSQL and Redis answering, Debian's chromium installed (scripts/ensure-system.sh).
system:
	@bash scripts/ensure-system.sh

# Lint, format, layer contracts, types and the docs site: seconds, so they run before the suite.
check: setup
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/ruff format --check --quiet .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir $(VENV)/site

# Two workers, whole files each: every worker starts its own Label Studio, Prefect and backend.
test: setup system check
	$(VENV)/bin/pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=15

# The docs site on http://127.0.0.1:8000 (mkdocs-material), rebuilt on every save.
docs: setup
	$(VENV)/bin/mkdocs serve

demo: setup
	$(VENV)/bin/smo stack up
	$(VENV)/bin/smo demo
	@echo ""
	@echo "Stop everything with: $(VENV)/bin/smo stack down"

# Benchmarks print ratios against a baseline measured in the same run; never part of `make test`.
bench: setup system
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(VENV)/bin/python $$f || exit 1; done

down:
	$(VENV)/bin/smo stack down

clean: down
	rm -rf .smo
