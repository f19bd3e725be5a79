# One image for every Dagster role; the command picks the role:
#   code location (default CMD): dagster code-server start -h 0.0.0.0 -p 4000 -m greenery_orchestration.definitions
#   webserver:                   dagster-webserver -h 0.0.0.0 -p 3000 -w workspace.yaml
#   daemon:                      dagster-daemon run -w workspace.yaml
# workspace.yaml loads the code in-process; under compose.yaml the webserver and the daemon use
# compose/workspace.yaml instead, which points at the code location's gRPC server.
#
#   docker build -t greenery-orchestration .
#   docker build --build-arg PYTHON_IMAGE=python:3.12-slim -t greenery-orchestration .

ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

# The dbt target the manifest is prepared for; GREENERY_TARGET can still be changed at run time.
ARG GREENERY_TARGET=duckdb

# DAGSTER_HEALTHCHECK_PORT: the port the HEALTHCHECK probes. It matches the default CMD (the code
# server); set it to 3000 for a webserver. A daemon listens on no port: compose.yaml gives it
# `dagster-daemon liveness-check` as its health check instead.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    GREENERY_WAREHOUSE_DIR=/opt/dagster/warehouse \
    GREENERY_DOCS_DIR=/opt/dagster/docs-site \
    GREENERY_TARGET=${GREENERY_TARGET} \
    DAGSTER_HEALTHCHECK_PORT=4000

# A fixed numeric user, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --gid 10001 dagster \
    && useradd --uid 10001 --gid dagster --create-home --shell /usr/sbin/nologin dagster \
    && mkdir -p /opt/dagster/app "${DAGSTER_HOME}" "${GREENERY_WAREHOUSE_DIR}" "${GREENERY_DOCS_DIR}" \
    && chown -R dagster:dagster /opt/dagster

WORKDIR /opt/dagster/app

# Dependencies first, read from pyproject.toml and pinned by constraints.txt (the lock that make
# and CI install from too), so this layer is rebuilt only when they change.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir --constraint constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the code. The dbt project is copied folder by folder, so a local target/ or logs/ never
# lands in the image.
# dagster*.yaml: the instance config, and its PostgreSQL part (dagster-postgres.yaml) that
# `ensure_dagster_home()` appends when DAGSTER_PG_HOST is set (compose.yaml's entrypoint runs it).
COPY --chown=dagster:dagster README.md workspace.yaml dagster*.yaml ./
COPY --chown=dagster:dagster compose/workspace.yaml compose/workspace.yaml
COPY --chown=dagster:dagster greenery_orchestration/ greenery_orchestration/
COPY --chown=dagster:dagster dbt_project/dbt_project.yml dbt_project/profiles.yml dbt_project/
COPY --chown=dagster:dagster dbt_project/macros/ dbt_project/macros/
COPY --chown=dagster:dagster dbt_project/models/ dbt_project/models/
COPY --chown=dagster:dagster dbt_project/snapshots/ dbt_project/snapshots/
COPY --chown=dagster:dagster dbt_project/tests/ dbt_project/tests/
# The instance: SQLite files in DAGSTER_HOME unless something replaces this file (compose.yaml
# writes the PostgreSQL variant over it; the Helm chart mounts its own).
COPY --chown=dagster:dagster dagster.yaml ${DAGSTER_HOME}/dagster.yaml

# Editable, without dependencies (they are installed above): the package finds dbt_project/
# beside itself, here in /opt/dagster/app.
RUN pip install --no-cache-dir --no-deps --editable .

USER 10001:10001

# The dbt manifest, parsed once here; the code location only reads it when it loads.
RUN dagster-dbt project prepare-and-package --file greenery_orchestration/project.py

EXPOSE 3000 4000

HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, socket; socket.create_connection(('127.0.0.1', int(os.environ.get('DAGSTER_HEALTHCHECK_PORT') or 3000)), timeout=5).close()"]

CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "greenery_orchestration.definitions"]
