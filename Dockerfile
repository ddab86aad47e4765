# rotator: the daemon (`rotator run`) in a small image.
#
# Build:  docker build -t rotator .
# Run:    docker run -v /path/to/rotator.toml:/etc/rotator/rotator.toml:ro \
#                    -v rotator-state:/var/lib/rotator -p 9477:9477 rotator
#
# Configuration comes from a mounted file (ROTATOR_CONFIG, below) and the environment:
# AWS credentials the usual AWS way (a task or instance role, IRSA, or AWS_* variables at
# `docker run` time), the database URL in the mounted config. Nothing secret is baked
# into the image. The mounted config should say `[daemon] listen = "0.0.0.0:9477"` so
# /metrics can be scraped from outside; the HEALTHCHECK works with either listen address
# because it asks from inside the container. See docs/operations.md.

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The package, its PostgreSQL driver and its Alembic migrations (they ship inside the
# package as rotator.migrations, so `rotator run` migrates without a checkout).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY rotator/ rotator/
COPY migrations/ migrations/
RUN pip install --no-cache-dir '.[postgres]' \
 && python -c "import importlib.resources as r; assert r.files('rotator.migrations').joinpath('env.py').is_file()" \
 && rm -rf /src

# An unprivileged user; its home is the working directory, where the default SQLite
# database (sqlite:///rotator.db) lands: mount a volume there to keep it.
RUN groupadd --system --gid 10001 rotator \
 && useradd --system --uid 10001 --gid rotator --home-dir /var/lib/rotator --create-home \
      --shell /usr/sbin/nologin rotator \
 && mkdir -p /etc/rotator
WORKDIR /var/lib/rotator
VOLUME ["/var/lib/rotator"]
USER 10001:10001

ENV ROTATOR_CONFIG=/etc/rotator/rotator.toml
EXPOSE 9477

# The daemon answers /healthz once it is up. Port 9477 is [daemon] listen's default port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9477/healthz', timeout=4)"]

# Stops at a step boundary on SIGTERM (docker stop); every step is safe to repeat.
STOPSIGNAL SIGTERM
ENTRYPOINT ["rotator"]
CMD ["run"]
