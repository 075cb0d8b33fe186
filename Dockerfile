# Cruddur's API as a container image: `cruddur serve` on 0.0.0.0:4567, as a non-root user.
# Build:   podman build --format docker -t cruddur .   (or docker build; OCI drops HEALTHCHECK)
# One-off: podman run --init --rm -e CONNECTION_URL=… cruddur db migrate
ARG BASE_IMAGE=python:3.12-slim-bookworm

# -- build: a virtual environment with the dependencies, then the package ----------------
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/cruddur
WORKDIR /build
# Dependencies before the code: a change under src/ (or to the README, which the package's
# metadata includes) rebuilds only the layers below this one. They come from the lock, as
# for bin/run: every file checked against its sha256 (requirements/run.lock, bin/lock).
COPY requirements/run.lock ./requirements/
RUN /opt/cruddur/bin/pip install --require-hashes --no-deps -r requirements/run.lock
COPY pyproject.toml README.md ./
COPY src ./src
# Built with the locked setuptools, not an isolated build fetching an unhashed one.
RUN /opt/cruddur/bin/pip install --no-deps --no-build-isolation . \
 && /opt/cruddur/bin/python -m compileall -q /opt/cruddur/lib

# -- run: the base, the venv, a user without privileges -----------------------------------
FROM ${BASE_IMAGE}
# roles/: where compose.yaml's migrate job leaves the API role's URL (a volume made from
# this folder is the user's, mode 0700).
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/cruddur cruddur \
 && install -d -o cruddur -g cruddur -m 0700 /home/cruddur/roles
COPY --from=build /opt/cruddur /opt/cruddur
ENV PATH=/opt/cruddur/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CRUDDUR_HOST=0.0.0.0 \
    PORT=4567 \
    CRUDDUR_HOME=/home/cruddur/.cruddur
USER cruddur
WORKDIR /home/cruddur
EXPOSE 4567
# `cruddur serve` execs granian, which stops its workers and exits on SIGTERM.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD ["python3", "-m", "cruddur.healthcheck"]
ENTRYPOINT ["cruddur"]
CMD ["serve"]
