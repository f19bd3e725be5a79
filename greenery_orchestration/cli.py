"""`greenery`: load data, run the chain, read the funnel, from a terminal."""

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from greenery_orchestration.settings import duckdb_path, ensure_dagster_home, warehouse_dir

# There is no internet where this runs, and dbt would otherwise try to phone home.
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.command(args) or 0
    except UserFacingError as error:
        print(f"greenery: {error}", file=sys.stderr)
        return 2
    except duckdb.IOException as error:
        # DuckDB allows one writer per file: a run holding it is no reason for a traceback.
        if "lock" not in str(error).lower():
            raise
        print(f"greenery: the warehouse is in use by another process (a run?); try again when it ends. "
              f"{str(error).splitlines()[0]}", file=sys.stderr)
        return 3


class UserFacingError(Exception):
    """A failure the user can fix; printed as one line, without a traceback."""


def load_csv(args) -> int:
    from greenery_orchestration.rawdata.load_csv import RawDataError, load_csv_dir  # noqa: PLC0415

    path = _prod_path()
    print(f"Loading {args.folder} into {path} (schema raw)...")
    try:
        with duckdb.connect(str(path)) as connection:
            counts = load_csv_dir(connection, Path(args.folder))
    except RawDataError as error:
        raise UserFacingError(f"{error}. Nothing was loaded; raw tables are unchanged.") from None
    for table, rows in counts.items():
        print(f"  raw.{table}: {rows:,} rows")
    return 0


def sample(args) -> int:
    from greenery_orchestration.rawdata.sample import append_sample, write_sample  # noqa: PLC0415

    if args.append:
        hours = args.hours or 1
        print(f"Appending {hours} hour(s) at {args.sessions_per_day:,} sessions/day after the newest raw event...")
        try:
            counts = append_sample(
                _prod_path(), seed=args.seed, hours=hours, sessions_per_day=args.sessions_per_day
            )
        except ValueError as error:
            raise UserFacingError(str(error)) from None
    else:
        end = datetime.now(UTC)
        window = {"hours": args.hours} if args.hours else {"days": args.days}
        target = Path(args.csv_dir) if args.csv_dir else _prod_path()
        print(
            f"Generating {args.hours or args.days} {'hour' if args.hours else 'day'}(s) at "
            f"{args.sessions_per_day:,} sessions/day ending {end:%Y-%m-%d %H:%M} UTC (seed {args.seed}) into {target}..."
        )
        counts = write_sample(target, seed=args.seed, sessions_per_day=args.sessions_per_day, end=end, **window)
    for table, rows in counts.items():
        print(f"  {table}: {rows:,} rows")
    return 0


def run(args) -> int:
    from greenery_orchestration.chain.run import run_chain  # noqa: PLC0415

    ensure_dagster_home()
    _prepare_dbt_manifest()
    succeeded = run_chain(allow_stale=args.allow_stale, full_refresh=args.full_refresh)
    if succeeded:
        _print_funnel("step")
    return 0 if succeeded else 1


def docs(args) -> int:
    from greenery_orchestration.chain.docs import docs_dir, serve  # noqa: PLC0415

    site = docs_dir()
    if not (site / "index.html").exists():
        raise UserFacingError(f"no docs published at {site}: run `greenery run` first")
    serve(site, args.port)
    return 0


def ui(args) -> int:
    from greenery_orchestration.ui import run_ui  # noqa: PLC0415

    ensure_dagster_home()
    _prepare_dbt_manifest()
    return run_ui(args.port)


def funnel(args) -> int:
    _print_funnel(args.by)
    return 0


def _print_funnel(by: str) -> None:
    from greenery_orchestration.funnel import as_text, read_funnel  # noqa: PLC0415

    path = duckdb_path()
    if not path.exists():
        raise UserFacingError(f"no warehouse at {path}: run `greenery sample` and `greenery run` first")
    try:
        with duckdb.connect(str(path), read_only=True) as connection:
            frame = read_funnel(lambda sql: connection.execute(sql).df(), by)
    except duckdb.CatalogException:
        raise UserFacingError(f"the funnel marts are not built in {path}: run `greenery run`") from None
    print(f"\nFunnel by {by} ({path}):\n")
    print(as_text(frame))


def _prepare_dbt_manifest() -> None:
    """Parse the dbt project when its files or settings changed, so edits to models are picked up."""
    from greenery_orchestration.project import prepare_manifest  # noqa: PLC0415

    parsed = prepare_manifest()
    print("Parsed the dbt project." if parsed else "The dbt project is unchanged since it was last parsed.")


def _prod_path() -> Path:
    warehouse_dir().mkdir(parents=True, exist_ok=True)
    return duckdb_path()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greenery",
        description="Greenery's funnel analytics: load raw data, run the chain, read the funnel.",
        epilog="Environment: GREENERY_WAREHOUSE_DIR (default ./warehouse) holds one DuckDB file "
        "per environment; DAGSTER_HOME (default ./.dagster) is the Dagster instance; "
        "GREENERY_ALERT_URLS lists where alerts go; see the README for the rest.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    command = commands.add_parser("load-csv", help="replace the raw tables with the seven CSVs in a folder")
    command.add_argument("folder", help="folder holding addresses.csv, events.csv, ... users.csv")
    command.set_defaults(command=load_csv)

    command = commands.add_parser("sample", help="write a synthetic Greenery data set that ends now")
    command.add_argument("--seed", type=int, default=42, help="same seed, same data (default 42)")
    command.add_argument("--days", type=int, default=3, help="days of activity (default 3)")
    command.add_argument(
        "--sessions-per-day", type=int, default=400, help="browsing sessions per day (default 400)"
    )
    command.add_argument("--hours", type=int, help="a window of this many hours instead of --days")
    command.add_argument(
        "--append",
        action="store_true",
        help="add the next --hours (default 1) after the newest raw event, keeping what is there",
    )
    command.add_argument(
        "--csv-dir", help="write the seven CSVs to this folder instead of the warehouse's raw tables"
    )
    command.set_defaults(command=sample)

    command = commands.add_parser(
        "run",
        help="run the production chain once, in this process, and print the funnel",
        description="Run greenery_production (freshness gate, PII masking, snapshot, build) and then "
        "greenery_docs_and_clone (docs, clones of prod), as the schedule would, alerting the same way.",
    )
    command.add_argument(
        "--allow-stale",
        action="store_true",
        help="report raw data past its freshness error threshold as a warning and build anyway",
    )
    command.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild the incremental models (events, sessions) from all raw data",
    )
    command.set_defaults(command=run)

    command = commands.add_parser("docs", help="serve the published dbt docs on 127.0.0.1")
    command.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    command.set_defaults(command=docs)

    command = commands.add_parser(
        "ui", help="start the Dagster webserver and daemon on 127.0.0.1; Ctrl-C or SIGTERM stops both"
    )
    command.add_argument("--port", type=int, default=3000, help="webserver port (default 3000)")
    command.set_defaults(command=ui)

    command = commands.add_parser("funnel", help="print the funnel marts as tables")
    command.add_argument(
        "--by", choices=["step", "product", "day"], default="step", help="which funnel (default step)"
    )
    command.set_defaults(command=funnel)
    return parser


if __name__ == "__main__":
    sys.exit(main())
