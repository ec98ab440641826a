# The README's commands. Everything the project needs is installed from here: a fresh clone and
# `make test` / `make demo` are enough (Python 3.11+ and the venv module are the only prerequisites).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=
# `sudo make install` / `sudo make uninstall` (README, "Running as a systemd service").
PREFIX       ?= /opt/montaged
UNITDIR      ?= /etc/systemd/system
SYSCONFDIR   ?= /etc
NO_SYSTEMCTL ?=
DESTDIR      ?=
INSTALL_VARS  = PREFIX='$(PREFIX)' UNITDIR='$(UNITDIR)' SYSCONFDIR='$(SYSCONFDIR)' \
                NO_SYSTEMCTL='$(NO_SYSTEMCTL)' DESTDIR='$(DESTDIR)' PYTHON='$(PYTHON)'

.PHONY: help test demo bench soak clean install uninstall

help:
	@echo "make demo   - set up .venv, generate a demo folder, run the daemon, render a preview"
	@echo "make test   - set up .venv with the test extras and run the whole test suite"
	@echo "make bench  - run the benchmarks against PySceneDetect and librosa (writes benchmarks/results/)"
	@echo "make soak   - the long reliability variants"
	@echo "sudo make install   - a virtualenv in PREFIX (/opt/montaged), the systemd unit, a default config"
	@echo "sudo make uninstall - remove them again (keeps the config, the state and the roots)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# One stamp per set of extras, redone when pyproject.toml changes.
$(VENV)/.installed-base: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(VENV)/.installed-%: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[$*]'
	@touch $@

test: $(VENV)/.installed-test
	@# pytest exits 5 when it collects no test: that is not a failure of the code.
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

demo: $(VENV)/.installed-base
	$(PY) -m montaged.demo

bench: $(VENV)/.installed-bench $(VENV)/.installed-test
	$(PY) -m benchmarks.run

soak: $(VENV)/.installed-test
	MONTAGED_SOAK=1 $(PY) -m pytest tests/reliability -m "soak or not soak" $(PYTEST_ARGS)

install uninstall:
	$(INSTALL_VARS) sh systemd/install.sh $@

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis benchmarks/.cache .montaged-state ingest previews
