# Two commands for a fresh machine: `make run` (the product on the embedded default) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-test lint migrate demo-key demo serve worker beat bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	cd tests/e2e/node && npm ci --no-audit --no-fund --silent

.env:
	@echo "SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" > .env
	@echo "# Local quick start over plain http: cookies may not require https." >> .env
	@echo "SESSION_COOKIE_SECURE=false" >> .env
	@echo "CSRF_COOKIE_SECURE=false" >> .env
	@echo "Wrote .env with a new SECRET_KEY (add provider keys there, e.g. OPENAI_API_KEY=sk-...)."

migrate: install .env
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0

demo-key: migrate
	@echo "Demo user demo@example.com; its new API key (shown once):"
	@$(BIN)/python manage.py create_api_key --email demo@example.com --name demo | tail -n 1

# A demo account (demo@example.com, password printed) with 30 days of realistic traffic, rolled up.
demo: migrate
	$(BIN)/python manage.py seed_demo --days 30 --seed 1

serve:
	HOST=$(HOST) PORT=$(PORT) $(BIN)/gunicorn neurometric.wsgi:application --config gunicorn.conf.py

# Set up and run on the embedded default: SQLite, local-memory cache, Celery tasks run in-process.
# `make run DEMO=1` also fills the demo account first (see `make demo`).
run: demo-key
	@if [ -n "$(DEMO)" ]; then $(MAKE) --no-print-directory demo; fi
	@echo "Neurometric on http://$(HOST):$(PORT)  (OpenAI base_url: http://$(HOST):$(PORT)/v1)"
	@$(MAKE) --no-print-directory serve

worker:
	$(BIN)/celery --app neurometric worker --loglevel INFO --queues default,analytics

beat:
	$(BIN)/celery --app neurometric beat --loglevel INFO

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Runs on whatever DATABASE_URL / REDIS_URL say; with neither, on SQLite and in-process Celery.
test: lint
	$(BIN)/python -m pytest

bench: install-test
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) var .pytest_cache
