# rotator: the daemon (`rotator run`) in a small image.
#
# Build:  docker build -t rotator --build-arg REVISION=$(git rev-parse HEAD) .
# Run:    docker run -v /path/to/rotator.toml:/etc/rotator/rotator.toml:ro \
#                    -v rotator-state:/var/lib/rotator -p 9477:9477 rotator
#
# Configuration comes from a mounted file (ROTATOR_CONFIG, below) and the environment:
# AWS credentials the usual AWS way (a task or instance role, IRSA, or AWS_* variables at
# `docker run` time), the database URL in the mounted config or ROTATOR_DATABASE_URL.
# Nothing secret is baked into the image. The mounted config should say
# `[daemon] listen = "0.0.0.0:9477"` so /metrics can be scraped from outside; the
# HEALTHCHECK reads the same file, so it follows whatever port it names.
# See docs/operations.md and deploy/ (Kubernetes, systemd, alerts, dashboard).
#
# Base image: both stages pin python:3.11-slim by digest, so a build uses the exact image
# that was reviewed and a moved tag changes nothing until this file changes. The digest is
# the multi-arch index (linux/amd64 and arm64) that python:3.11-slim (= 3.11.16-slim-trixie)
# pointed to when Docker Hub pushed it on 2026-08-16. It was not resolved from a registry
# by this project (its build machines have none); it is the same digest that independent
# public projects pin for that tag, one of them recording its Hub tag API lookup and the
# official-images commit fe89472b. To update it (also for Debian security fixes): run
#   docker buildx imagetools inspect python:3.11-slim
# take the "Digest:" line (the index, not a per-platform manifest), put it in both FROM
# lines, and rebuild; tests/unit/test_packaging.py checks both stages use the same digest.

# --- build: a virtualenv installed from the hash-locked requirements -------------------
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7 AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Every dependency (and the build backend) from deploy/image/requirements.lock, which
# pip-compile wrote with a hash for each file: nothing unpinned, nothing unverified. The
# lock holds the runtime and PostgreSQL dependencies only: no moto (the `demo` extra).
RUN python -m venv /opt/rotator
COPY deploy/image/requirements.lock /src/requirements.lock
RUN /opt/rotator/bin/pip install --require-hashes --only-binary=:all: -r /src/requirements.lock

# The package itself, without resolving anything again (--no-deps, no build isolation: the
# locked setuptools builds it), with its Alembic migrations (they ship inside the package
# as rotator.migrations, so `rotator run` migrates without a checkout).
COPY pyproject.toml README.md /src/
COPY rotator/ /src/rotator/
COPY migrations/ /src/migrations/
RUN /opt/rotator/bin/pip install --no-deps --no-build-isolation /src \
 && /opt/rotator/bin/pip check \
 && /opt/rotator/bin/python -c "import importlib.resources as r; assert r.files('rotator.migrations').joinpath('env.py').is_file()"
COPY deploy/image/healthcheck.py /opt/rotator/healthcheck.py

# --- runtime: the virtualenv and an unprivileged user, nothing else --------------------
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="adobe-secret-rotator" \
      org.opencontainers.image.description="Rotates Adobe OAuth Server-to-Server client secrets through AWS Secrets Manager, crash-safely." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.documentation="docs/operations.md" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim" \
      org.opencontainers.image.base.digest="sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/rotator/bin:$PATH

COPY --from=build /opt/rotator /opt/rotator

# An unprivileged user; its home is the working directory, where the default SQLite
# database (sqlite:///rotator.db) lands: mount a volume there to keep it. Nothing else is
# written at run time, so the root filesystem can be read-only (Kubernetes: see deploy/).
RUN groupadd --system --gid 10001 rotator \
 && useradd --system --uid 10001 --gid rotator --home-dir /var/lib/rotator --create-home \
      --shell /usr/sbin/nologin rotator \
 && mkdir -p /etc/rotator
WORKDIR /var/lib/rotator
VOLUME ["/var/lib/rotator"]
USER 10001:10001

ENV ROTATOR_CONFIG=/etc/rotator/rotator.toml
EXPOSE 9477

# Ready = a tick completed recently (/readyz), asked on the port the mounted config's
# [daemon] listen names (9477 by default), from inside the container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "/opt/rotator/healthcheck.py"]

# Stops at a step boundary on SIGTERM (docker stop); every step is safe to repeat.
STOPSIGNAL SIGTERM
ENTRYPOINT ["rotator"]
CMD ["run"]
