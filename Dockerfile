# One image for every process of the Procfile (web, worker, beat); docker-compose.yml runs them.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT=8000
WORKDIR /app
COPY pyproject.toml README.md ./
COPY neurometric neurometric
COPY accounts accounts
COPY gateway gateway
COPY analytics analytics
RUN pip install --no-cache-dir .
COPY . .
RUN SECRET_KEY=build-only python manage.py collectstatic --noinput --verbosity 0
RUN useradd --create-home neurometric
USER neurometric
EXPOSE 8000
CMD ["gunicorn", "neurometric.wsgi:application", "--config", "gunicorn.conf.py"]
