# The two commands a newcomer needs: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app dps
# make run starts a simulated clock inside the DPS period, so the demo is a living DPS.
DEMO_CLOCK ?= 2024-11-18T09:30
HOST ?= 127.0.0.1
PORT ?= 5000
# Links in emails and messages use the address actually served, unless DPS_BASE_URL is set.
RUN_ENV = DPS_CLOCK=$${DPS_CLOCK-$(DEMO_CLOCK)} DPS_BASE_URL=$${DPS_BASE_URL:-http://$(HOST):$(PORT)}
# The set-up steps' own output goes to these files, and is shown only when a step fails.
LOGS := instance/setup-logs
# $(call quietly,WHAT,LOG,COMMAND): run COMMAND with its output in $(LOGS)/LOG, shown if it fails.
quietly = mkdir -p $(LOGS); if ! ( $(3) ) >$(LOGS)/$(2) 2>&1; then cat $(LOGS)/$(2); \
	echo "make: $(1) failed; the output above is also in $(LOGS)/$(2)" >&2; exit 1; fi

.PHONY: run test assets install clean reset-demo

$(BIN)/activate:
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@echo "Creating the virtual environment $(VENV)"
	@$(call quietly,creating the virtual environment,venv.log,$(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet --disable-pip-version-check --progress-bar off --upgrade pip)

# Reinstall whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	@echo "Installing the Python packages into $(VENV)"
	@$(call quietly,installing the Python packages,pip.log,$(BIN)/pip install --quiet --disable-pip-version-check --progress-bar off -e '.[test]')
	@touch $@

install: $(VENV)/.installed

# The GOV.UK Frontend styles are built from npm at install time and never committed.
# Without npm the site still works, unstyled.
# Rebuilt when a source is newer than the build (or with `make assets FORCE=1`).
STYLE_SOURCES := assets/package.json assets/package-lock.json assets/app.scss $(wildcard assets/js/*.js)
assets:
	@if [ -z "$(FORCE)" ] && [ -f dps/static/build/app.css ] && [ -z "$$(find $(STYLE_SOURCES) -newer dps/static/build/app.css)" ]; then \
		echo "Styles: up to date in dps/static/build (built with npm earlier)"; \
	elif command -v npm >/dev/null 2>&1; then \
		$(call quietly,building the styles with npm,npm.log,cd assets && npm ci --silent --no-audit --no-fund --no-progress && npm run --silent build); \
		echo "Styles: built from GOV.UK Frontend with npm, into dps/static/build"; \
	elif [ -f dps/static/build/app.css ]; then \
		echo "Styles: npm not found, so not rebuilt; the pages use those built before in dps/static/build"; \
	else \
		echo "Styles: not built, npm not found: the pages will work but will be unstyled (see README)"; \
	fi

# The embedded job queue (huey, in instance/dps-jobs.sqlite3) needs no other process: the web
# process runs a worker in threads of its own (DPS_WORKER_IN_WEB), for the Exports page's large
# exports and, with DPS_SMTP_URL set, the emails.
run: install assets
	@echo "Virtual environment: $(VENV), $$($(BIN)/python -c 'import sys; print("Python", sys.version.split()[0])'), with the packages of pyproject.toml"
	@$(call quietly,migrating the database,db-upgrade.log,$(FLASK) db upgrade)
	@if [ -n "$$DPS_DATABASE_URL" ]; then echo "Database: DPS_DATABASE_URL, migrated to the latest version"; \
	else echo "Database: instance/dps.sqlite3, migrated to the latest version"; fi
	@$(RUN_ENV) $(FLASK) demo load --if-empty $(if $(DEMO_PASSWORD),--password '$(DEMO_PASSWORD)')
	@$(RUN_ENV) $(FLASK) run --host $(HOST) --port $(PORT)

# The antivirus tests start Debian's clamd (/usr/sbin/clamd) with a signature database of their own.
test: install
	@if [ ! -x /usr/sbin/clamd ]; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "Installing clamav-daemon for the antivirus tests"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clamav-daemon >/dev/null \
				|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clamav-daemon >/dev/null; }; \
		else \
			echo "clamd is missing: the antivirus tests will be skipped (they fail with CI=true)."; \
			echo "Install it with: sudo apt-get install -y clamav-daemon"; \
		fi; \
	fi
	$(BIN)/pytest $(PYTEST_ARGS)

# Start the demo again from scratch (deletes the local SQLite database, its job queue and documents).
reset-demo:
	rm -rf instance/dps.sqlite3 instance/dps.sqlite3-wal instance/dps.sqlite3-shm instance/documents
	rm -f instance/dps-jobs.sqlite3 instance/dps-jobs.sqlite3-wal instance/dps-jobs.sqlite3-shm

clean:
	rm -rf $(VENV) assets/node_modules dps/static/build
