"""Where things live, set by environment variables with safe defaults.

Everything is read when it is needed, never at import, so a process that changes its
environment (a test, a CLI flag) sees the change.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import yaml

REPO_DIR = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_DIR / "dbt_project"
SOURCES_YAML = DBT_PROJECT_DIR / "models" / "staging" / "greenery" / "_greenery__sources.yml"

PROD = "prod"


def target() -> str:
    """The warehouse the chain runs on: `duckdb` (the embedded default) or `snowflake`."""
    return os.environ.get("GREENERY_TARGET", "duckdb")
# How long `greenery run` waits for another run's turn on the warehouse by default (--wait).
DEFAULT_WAIT_SECONDS = 3600


def warehouse_dir() -> Path:
    """The folder of the embedded warehouse: one DuckDB file per environment."""
    return Path(os.environ.get("GREENERY_WAREHOUSE_DIR", "warehouse")).resolve()


def duckdb_path(environment: str = PROD) -> Path:
    return warehouse_dir() / f"{environment}.duckdb"


def duckdb_config(at_once: int = 1) -> dict[str, str | bool]:
    """The settings of the DuckDB connections that build, publish and clone the warehouse, as
    dbt's profile gives them to dbt's (profiles.yml): how much memory DuckDB may take before it
    spills to disk (a share of it for each of `at_once` connections working at the same time), and
    no insertion order (see the profile). The loaders keep their defaults: a rejected CSV row is
    named by its line, found by insertion order (rawdata/load_csv.py)."""
    limit = os.environ.get("GREENERY_DUCKDB_MEMORY_LIMIT", "3GB")
    if at_once > 1:
        limit = _share(limit, at_once)
    return {"memory_limit": limit, "preserve_insertion_order": False}


# DuckDB's units of memory: 1000^i, or 1024^i with an "i".
_MEMORY_UNITS = {
    **dict.fromkeys(["b", "byte", "bytes"], 1),
    **{unit: 10**(3 * i) for i, names in enumerate(["k kb kilobyte kilobytes", "m mb megabyte megabytes",
                                                    "g gb gigabyte gigabytes", "t tb terabyte terabytes"], 1)
       for unit in names.split()},
    **{unit: 2**(10 * i) for i, unit in enumerate(["kib", "mib", "gib", "tib"], 1)},
}


def _share(memory: str, parts: int) -> str:
    """One of `parts` equal shares of `memory`, in DuckDB's words (3GB, 2.5 GiB, 50%); no limit
    (-1, none) stays none."""
    text = memory.strip().lower()
    if text in ("-1", "none", "null"):
        return memory
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz% ")
    unit = text[len(number):].strip()
    try:
        if unit == "%":
            return f"{float(number) / parts}%"
        return f"{int(float(number) * _MEMORY_UNITS[unit]) // parts}B"
    except (KeyError, ValueError):
        raise ValueError(f"GREENERY_DUCKDB_MEMORY_LIMIT: not an amount of memory: {memory!r} (e.g. 3GB)") from None


def future_tolerance() -> timedelta:
    """How far past now a raw timestamp may lie before it is an error, not fresh data (a dbt var)."""
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    return timedelta(hours=project["vars"]["future_tolerance_hours"])


def snowflake_endpoint() -> dict[str, str | int]:
    """Where the Snowflake connector goes instead of the account's own https URL: SNOWFLAKE_HOST,
    SNOWFLAKE_PORT and SNOWFLAKE_PROTOCOL, each optional (a proxy, a private link, an emulator).
    Only those set and not empty, as connector arguments; dbt's profile reads the same three."""
    endpoint: dict[str, str | int] = {}
    if host := os.environ.get("SNOWFLAKE_HOST"):
        endpoint["host"] = host
    if port := os.environ.get("SNOWFLAKE_PORT"):
        if not port.isdigit():
            raise ValueError(f"SNOWFLAKE_PORT must be a port number, not {port!r}")
        endpoint["port"] = int(port)
    if protocol := os.environ.get("SNOWFLAKE_PROTOCOL"):
        if protocol not in ("http", "https"):
            raise ValueError(f"SNOWFLAKE_PROTOCOL must be http or https, not {protocol!r}")
        endpoint["protocol"] = protocol
    return endpoint


def snowflake_emulated() -> bool:
    """GREENERY_SNOWFLAKE_EMULATED=true: the Snowflake target runs on fakesnow (the tests), which
    cannot run database clones, grants, masking policies or schema swaps; the nearest statements it
    can run stand in for them, and the real ones are only rendered."""
    return os.environ.get("GREENERY_SNOWFLAKE_EMULATED", "false").lower() == "true"


def snowflake_key_pair() -> bool:
    """Key-pair authentication when SNOWFLAKE_PRIVATE_KEY_PATH is set, else SNOWFLAKE_PASSWORD (as the dbt profile)."""
    return bool(os.environ.get("SNOWFLAKE_PRIVATE_KEY_PATH"))


def snowflake_environment(environment: str) -> tuple[str, str]:
    """The environment's database and role: GREENERY_<ENV>_DATABASE / _ROLE, else <PROD>_<ENV>, <ENV>_ROLE."""
    prefix = f"GREENERY_{environment.upper()}"
    database = os.environ.get(f"{prefix}_DATABASE") or f"{os.environ['SNOWFLAKE_DATABASE']}_{environment}".upper()
    return database, os.environ.get(f"{prefix}_ROLE") or f"{environment}_ROLE".upper()


def masking_salt(warehouse_dir: Path) -> str:
    """GREENERY_MASKING_SALT, else a random salt kept beside the warehouse (never printed)."""
    if os.environ.get("GREENERY_MASKING_SALT"):
        return os.environ["GREENERY_MASKING_SALT"]
    salt_file = warehouse_dir / ".masking_salt"
    if not salt_file.exists():
        salt_file.write_text(secrets.token_hex(16))
        salt_file.chmod(0o600)
    return salt_file.read_text().strip()


def alert_urls() -> list[str]:
    """GREENERY_ALERT_URLS: where alerts go (Apprise URLs, comma-separated); none by default."""
    return [url.strip() for url in os.environ.get("GREENERY_ALERT_URLS", "").split(",") if url.strip()]


def ui_url() -> str:
    """GREENERY_UI_URL: the Dagster UI that alerts link to."""
    return os.environ.get("GREENERY_UI_URL", "http://127.0.0.1:3000").rstrip("/")


def production_cron() -> tuple[str, str]:
    """GREENERY_SCHEDULE_CRON (default every 3 hours, 06:00 to 21:00) in GREENERY_SCHEDULE_TIMEZONE."""
    return os.environ.get("GREENERY_SCHEDULE_CRON", "0 6-21/3 * * *"), os.environ.get("GREENERY_SCHEDULE_TIMEZONE", "UTC")


def freshness_sensor_seconds() -> int:
    """GREENERY_FRESHNESS_SENSOR_SECONDS: how often the freshness sensor looks at the raw tables."""
    return int(os.environ.get("GREENERY_FRESHNESS_SENSOR_SECONDS", "600"))


def docs_dir() -> Path:
    """Where the dbt docs are published as a static site, for `greenery docs` to serve."""
    return Path(os.environ.get("GREENERY_DOCS_DIR", "docs-site")).resolve()


def docs_url() -> str:
    """GREENERY_DOCS_URL: where `greenery docs` serves that site, for links to it (the funnel report)."""
    return os.environ.get("GREENERY_DOCS_URL", "http://127.0.0.1:8080").rstrip("/")


def dagster_home() -> Path:
    """The Dagster instance folder: DAGSTER_HOME, or .dagster in the working directory."""
    return Path(os.environ.get("DAGSTER_HOME", ".dagster")).resolve()


def instance_config() -> str:
    """The project's dagster.yaml, with PostgreSQL storage when DAGSTER_PG_HOST is set."""
    config = (REPO_DIR / "dagster.yaml").read_text()
    if os.environ.get("DAGSTER_PG_HOST"):
        os.environ.setdefault("DAGSTER_PG_PORT", "5432")
        config += "\n" + (REPO_DIR / "dagster-postgres.yaml").read_text()
    return config


def ensure_dagster_home() -> Path:
    """Point DAGSTER_HOME at an instance folder holding the project's instance config.

    Dagster reads dagster.yaml (telemetry off, the run queue, the warehouse pool, the storage) on
    its first command, so it is written before any; it is derived, so edit the repo's copy.
    """
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    wanted = instance_config()
    if not config.exists() or config.read_text() != wanted:
        config.write_text(wanted)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
