FROM python:3.11-slim
WORKDIR /srv
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY db_manager ./db_manager
# The library with the extras the reference app uses, and the server; the app itself runs
# from the source tree (WORKDIR), it is not part of the wheel.
RUN pip install --no-cache-dir ".[postgres,fastapi,aiogram,migrations]" "uvicorn[standard]>=0.30"
COPY alembic.ini ./
COPY app ./app
EXPOSE 8000
CMD ["python", "-m", "app", "run", "--host", "0.0.0.0", "--port", "8000"]
