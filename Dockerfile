# sessionstore: a small image that serves on 0.0.0.0:8080.
# Configure with SESSIONSTORE_REDIS_URL and SESSIONSTORE_AUTH_FILE (mount the file).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY lua ./lua
RUN python -m venv /opt/sessionstore \
 && /opt/sessionstore/bin/pip install --no-cache-dir --disable-pip-version-check .

FROM python:3.11-slim
COPY --from=build /opt/sessionstore /opt/sessionstore
RUN useradd --system --uid 10001 --no-create-home sessionstore
USER sessionstore
ENV PATH=/opt/sessionstore/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SESSIONSTORE_HOST=0.0.0.0 \
    SESSIONSTORE_PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SESSIONSTORE_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["sessionstore"]
CMD ["serve"]
