# One image for every CFD Broker service; compose.yaml picks the command (cfd server | dbproc | poller | db migrate).
#   docker build -t cfd-broker .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# jemalloc: the long-running commands run on it when it is installed, and their memory stays flat
# (docs/operations.md, "Memory").
RUN apt-get update && apt-get install -y --no-install-recommends libjemalloc2 && rm -rf /var/lib/apt/lists/*

# Every dependency ships binary wheels for CPython 3.11 on glibc (amd64 and arm64): no compiler needed.
WORKDIR /tmp/cfd-broker-src
COPY . .
RUN pip install . \
    && cd / && rm -rf /tmp/cfd-broker-src

# Run as an unprivileged user; its home holds the data directory (e.g. the mail outbox).
RUN useradd --create-home --home-dir /home/cfd --uid 10001 --user-group --shell /usr/sbin/nologin cfd
USER cfd
WORKDIR /home/cfd
ENV CFD_DATA_DIR=/home/cfd/.cfd \
    CFD_HTTP_HOST=0.0.0.0

# 8000: REST API (/api/v1, /schema, /health); 8080: WebSocket feed (/ws)
EXPOSE 8000 8080
CMD ["cfd", "up"]
