FROM python:3.11-slim
WORKDIR /srv
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY db_manager ./db_manager
COPY app ./app
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["python", "-m", "app", "run", "--host", "0.0.0.0", "--port", "8000"]
