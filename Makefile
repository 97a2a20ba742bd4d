# The two commands a newcomer needs: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app dps
# make run starts a simulated clock inside the DPS period, so the demo is a living DPS.
DEMO_CLOCK ?= 2024-11-18T09:30
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test assets install clean reset-demo

$(BIN)/activate:
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# The GOV.UK Frontend styles are built from npm at install time and never committed.
# Without npm the site still works, unstyled.
assets:
	@if command -v npm >/dev/null 2>&1; then \
		cd assets && npm ci --silent --no-audit --no-fund && npm run --silent build; \
	else \
		echo "npm not found: the pages will work but will be unstyled (see README)"; \
	fi

# The embedded job queue (huey, in instance/dps-jobs.sqlite3) needs no other process: the web
# process runs a worker in threads of its own (DPS_WORKER_IN_WEB), for the Exports page's large
# exports and, with DPS_SMTP_URL set, the emails.
run: install assets
	$(FLASK) db upgrade
	DPS_CLOCK=$${DPS_CLOCK-$(DEMO_CLOCK)} $(FLASK) demo load --if-empty $(if $(DEMO_PASSWORD),--password '$(DEMO_PASSWORD)')
	DPS_CLOCK=$${DPS_CLOCK-$(DEMO_CLOCK)} $(FLASK) run --host $(HOST) --port $(PORT)

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
