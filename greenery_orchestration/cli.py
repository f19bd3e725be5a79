"""`greenery`: load data, run the chain, read the funnel, from a terminal."""

import argparse
import contextlib
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from greenery_orchestration.settings import DEFAULT_WAIT_SECONDS, docs_dir, ensure_dagster_home

if TYPE_CHECKING:
    from greenery_orchestration.warehouse import Warehouse

# There is no internet where this runs, and dbt would otherwise try to phone home.
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.command(args) or 0
    except UserFacingError as error:
        print(f"greenery: {error}", file=sys.stderr)
        return 2
    except WarehouseInUse as error:
        print(f"greenery: {error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("greenery: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`greenery funnel | head`): not an error, and nothing left to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:
        # DuckDB allows one writer per file: a run holding it is no reason for a traceback.
        from greenery_orchestration.warehouse import is_lock_conflict  # noqa: PLC0415 - loads Dagster

        if not is_lock_conflict(error):
            raise
        print(f"greenery: the warehouse is in use by another process (a run?); try again when it ends. "
              f"{str(error).splitlines()[0]}", file=sys.stderr)
        return 3


class UserFacingError(Exception):
    """A failure the user can fix; printed as one line, without a traceback."""


class WarehouseInUse(Exception):
    """Another run holds the warehouse: one line, exit code 3."""


def load_csv(args) -> int:
    from greenery_orchestration.rawdata.load_csv import RawDataError, check_folder  # noqa: PLC0415
    from greenery_orchestration.warehouse import open_warehouse  # noqa: PLC0415

    warehouse = open_warehouse()
    print(f"Loading {args.folder} into {warehouse.location} (schema raw)...")
    try:
        check_folder(Path(args.folder))  # a typo creates no warehouse and takes no turn
        with _raw_load_turn():
            counts = warehouse.load_csv(Path(args.folder))
    except RawDataError as error:
        raise UserFacingError(f"{error}. Nothing was loaded; raw tables are unchanged.") from None
    except Exception as error:
        if (failure := warehouse.write_failure(error)) is None:
            raise  # another process holds the warehouse (main() says so), or a bug
        raise UserFacingError(f"{failure}. Nothing was loaded; raw tables are unchanged.") from None
    for table, rows in counts.items():
        print(f"  raw.{table}: {rows:,} rows")
    return 0


def sample(args) -> int:
    from greenery_orchestration.rawdata.load_csv import is_write_failure, write_failure  # noqa: PLC0415
    from greenery_orchestration.rawdata.sample import NothingToAppend  # noqa: PLC0415

    if args.csv_dir:
        import duckdb  # noqa: PLC0415 - writes the CSVs

        if args.append:
            raise UserFacingError("--append adds to the warehouse's raw tables; it cannot write --csv-dir")
        try:
            counts = _write_sample(args, None)
        except (duckdb.IOException, duckdb.FatalException, OSError) as error:
            if not is_write_failure(error):
                raise
            raise UserFacingError(write_failure(Path(args.csv_dir), error)) from None
        _print_counts(counts)
        return 0
    from greenery_orchestration.warehouse import open_warehouse  # noqa: PLC0415

    warehouse = open_warehouse()
    try:
        with _raw_load_turn():
            counts = _append_sample(args, warehouse) if args.append else _write_sample(args, warehouse)
    except NothingToAppend as nothing:
        print(nothing)  # not a failure: a shop can be quiet for an hour
        return 0
    except ValueError as error:
        raise UserFacingError(str(error)) from None
    except Exception as error:
        if (failure := warehouse.write_failure(error)) is None:
            raise  # another process holds the warehouse (main() says so), or a bug
        raise UserFacingError(f"{failure}. Nothing was written; raw tables are unchanged.") from None
    _print_counts(counts)
    return 0


def _print_counts(counts: dict[str, int]) -> None:
    for table, rows in counts.items():
        print(f"  {table}: {rows:,} rows")


def _write_sample(args, warehouse: "Warehouse | None") -> dict[str, int]:
    """Into the warehouse, or, without one, as CSVs into --csv-dir."""
    from greenery_orchestration.rawdata.sample import write_sample  # noqa: PLC0415

    end = args.end or datetime.now(UTC)
    window = {"hours": args.hours} if args.hours else {"days": args.days}
    print(
        f"Generating {args.hours or args.days} {'hour' if args.hours else 'day'}(s) at "
        f"{args.sessions_per_day:,} sessions/day ending {end.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC "
        f"(seed {args.seed}{_conversion_said(args)}) into {warehouse.location if warehouse else args.csv_dir}..."
    )
    spec = {"seed": args.seed, "sessions_per_day": args.sessions_per_day, "end": end, **window,
            "conversion": dict(args.conversion or [])}
    return warehouse.write_sample(**spec) if warehouse else write_sample(Path(args.csv_dir), **spec)


def _append_sample(args, warehouse: "Warehouse") -> dict[str, int]:
    now = datetime.now(UTC)
    until = min(args.end, now) if args.end else now  # never an event in the future
    hours = args.hours or 1
    print(
        f"Appending up to {hours} hour(s) at {args.sessions_per_day:,} sessions/day{_conversion_said(args)} after "
        f"the newest raw event in {warehouse.location}, ending by {until:%Y-%m-%d %H:%M:%S} UTC..."
    )
    appended = warehouse.append_sample(
        seed=args.seed, hours=hours, sessions_per_day=args.sessions_per_day, until=until,
        conversion=dict(args.conversion or []),
    )
    print(f"Appended {appended.start:%Y-%m-%d %H:%M:%S} to {appended.end:%Y-%m-%d %H:%M:%S} UTC (seed {args.seed}):")
    return appended.counts


def _conversion_factor(text: str) -> tuple[str, float]:
    """--conversion STEP=FACTOR, checked as the generator will use it."""
    from greenery_orchestration.rawdata.sample import conversion_rates  # noqa: PLC0415 - numpy, only when asked

    step, _, factor = (part.strip() for part in text.partition("="))
    try:
        value = float(factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected STEP=FACTOR (e.g. checkout=0.3), not {text!r}") from None
    try:
        conversion_rates({step: value})
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return step, value


def _conversion_said(args) -> str:
    return "".join(f", {step} conversion x{factor:g}" for step, factor in dict(args.conversion or []).items())


@contextlib.contextmanager
def _raw_load_turn():
    """Raw data changes only while no `greenery run` is between its steps; else exit 3, one line."""
    from greenery_orchestration.chain.guard import WarehouseBusy, raw_load_turn  # noqa: PLC0415

    try:
        with raw_load_turn():
            yield
    except WarehouseBusy as busy:
        raise WarehouseInUse(str(busy)) from None


def _utc_instant(text: str) -> datetime:
    """An ISO 8601 date or date-time; UTC unless it carries an offset."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO date or date-time: {text!r} (e.g. 2026-01-01 or 2026-01-01T12:00:00Z)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.utcoffset() is None else moment.astimezone(UTC)


def run(args) -> int:
    from greenery_orchestration.chain.guard import Stopped, WarehouseBusy, stoppable, warehouse_turn  # noqa: PLC0415

    try:
        with stoppable() as stopper:
            _require_warehouse_unless_in_use()  # nothing to run on: say so without queueing for a turn
            ensure_dagster_home()
            # Another run may be writing the warehouse: look at it, parse and read it only in our turn.
            with warehouse_turn(args.wait, stopper) as turn:
                warehouse = _require_warehouse()
                # The definitions are built from the manifest: parse before anything imports them.
                _prepare_dbt_manifest()
                from greenery_orchestration.chain.run import run_chain  # noqa: PLC0415

                succeeded = run_chain(args.allow_stale, args.full_refresh, args.verbose, turn)
    except Stopped as stop:
        print(f"greenery: {stop}; no further step was started", file=sys.stderr)
        return stop.exit_code
    except WarehouseBusy as busy:
        print(f"greenery: {busy}", file=sys.stderr)
        return 3
    if succeeded:
        _print_funnel("step", warehouse)  # checked before the run, which built and published it
    return 0 if succeeded else 1


def docs(args) -> int:
    import functools  # noqa: PLC0415
    import http.server  # noqa: PLC0415

    site = docs_dir()
    if not (site / "index.html").exists():
        raise UserFacingError(f"no docs published at {site}: run `greenery run` first")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    _stop_on_sigterm()
    with http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler) as server:
        print(f"Serving the dbt docs from {site} on http://127.0.0.1:{args.port}/ "
              f"and the funnel report on http://127.0.0.1:{args.port}/report/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


def _stop_on_sigterm() -> None:
    """SIGTERM stops the server as Ctrl-C does, even when the process that started it left
    SIGTERM ignored or blocked: both are inherited across exec, and a supervisor's stop must work."""
    import signal  # noqa: PLC0415

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})


def ui(args) -> int:
    from greenery_orchestration.ui import run_ui  # noqa: PLC0415

    ensure_dagster_home()
    _prepare_dbt_manifest()
    return run_ui(args.port)


def funnel(args) -> int:
    _print_funnel(args.by)
    return 0


def _print_funnel(by: str, warehouse: "Warehouse | None" = None) -> None:
    import dagster as dg  # noqa: PLC0415

    from greenery_orchestration.funnel import as_text, provenance, read_funnel  # noqa: PLC0415

    warehouse = warehouse or _require_warehouse(need_raw=False)
    try:
        frame = read_funnel(warehouse.read_sql, by)
    except Exception as error:
        if "does not exist" not in str(error).lower():  # DuckDB's and Snowflake's words for it
            raise
        raise UserFacingError(f"the funnel marts are not built in {warehouse.location}: run `greenery run`") from None
    published = warehouse.last_publish()
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        about = provenance(instance, published)
    print(f"\nFunnel by {by} ({warehouse.location}):")
    print("\n".join(about) + "\n")
    print(as_text(frame))


def _require_warehouse_unless_in_use() -> None:
    from greenery_orchestration.warehouse import is_lock_conflict  # noqa: PLC0415

    try:
        _require_warehouse()
    except Exception as error:
        if not is_lock_conflict(error):
            raise  # held by another run: this one waits for its turn, then looks again


def _require_warehouse(need_raw: bool = True) -> "Warehouse":
    """The warehouse, unless it is missing, corrupt or truncated (refused before anything writes)."""
    from greenery_orchestration.warehouse import WarehouseUnusable, open_warehouse  # noqa: PLC0415

    warehouse = open_warehouse()
    try:
        warehouse.check_usable(need_raw=need_raw)
    except WarehouseUnusable as error:
        raise UserFacingError(str(error)) from None
    return warehouse


def _prepare_dbt_manifest() -> None:
    """Parse the dbt project when its files or settings changed, so edits to models are picked up."""
    from greenery_orchestration.project import prepare_manifest  # noqa: PLC0415

    parsed = prepare_manifest()
    print("Parsed the dbt project." if parsed else "The dbt project is unchanged since it was last parsed.")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greenery",
        description="Greenery's funnel analytics: load raw data, run the chain, read the funnel.",
        epilog="Environment: GREENERY_WAREHOUSE_DIR (default ./warehouse) holds one DuckDB file "
        "per environment; DAGSTER_HOME (default ./.dagster) is the Dagster instance; "
        "GREENERY_ALERT_URLS lists where alerts go; see the README for the rest.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    command = commands.add_parser(
        "load-csv",
        help="replace the raw tables with the seven CSVs in a folder",
        description="Replace the raw tables with the seven CSVs in FOLDER, in one transaction that also "
        "logs the load in ops.load_log. Files are UTF-8, with or without a byte-order mark, with LF or "
        "CRLF line endings (or a mix). A missing folder, file or column, a line with the wrong number of "
        "fields, text that is not UTF-8 or a value that does not parse stops the load with one line "
        "naming the file, the line and the cause (values of personal-data columns are never shown), "
        "exit code 2; the raw tables then stay as they were. A full or read-only disk is reported the "
        "same way.",
    )
    command.add_argument("folder", help="folder holding addresses.csv, events.csv, ... users.csv")
    command.set_defaults(command=load_csv)

    command = commands.add_parser(
        "sample",
        help="write a synthetic Greenery data set that ends now (or at --end)",
        description="Replace the raw tables with a synthetic shop (or write it as CSVs with --csv-dir), "
        "or with --append add the next hours of the shop to what the raw tables hold. Each load is "
        "logged in ops.load_log.",
    )
    command.add_argument("--seed", type=int, default=42, help="same seed and --end, same data (default 42)")
    command.add_argument("--days", type=int, default=3, help="days of activity (default 3)")
    command.add_argument(
        "--sessions-per-day", type=int, default=400, help="browsing sessions per day (default 400)"
    )
    command.add_argument("--hours", type=int, help="a window of this many hours instead of --days")
    command.add_argument(
        "--end",
        type=_utc_instant,
        metavar="WHEN",
        help="when the data ends: an ISO date or date-time, UTC unless it has an offset (e.g. "
        "2026-01-01 or 2026-01-01T12:00:00Z; default now). With --append: the latest end of the "
        "appended window (never later than now)",
    )
    command.add_argument(
        "--append",
        action="store_true",
        help="add the next --hours (default 1) after the newest raw event, keeping what is there: new "
        "users and orders of the products and promos in the raw tables. The window ends by now (or "
        "--end) and is at least an hour long; when less than an hour has passed since the newest "
        "event, nothing is appended and the command says so (exit code 0)",
    )
    command.add_argument(
        "--conversion",
        type=_conversion_factor,
        action="append",
        metavar="STEP=FACTOR",
        help="multiply a funnel step's conversion in the hours generated (or appended) by FACTOR, e.g. "
        "checkout=0.3 for a broken checkout, to see the conversion anomaly alert fire on that day. STEP is "
        "add_to_cart (the chance to add each product viewed to the cart, so the share of sessions adding "
        "any falls less than FACTOR) or checkout (the share of sessions with a cart that check out); FACTOR "
        "is 0 or more, up to what makes the rate 100%%. Repeat for both steps",
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
        help="rebuild the incremental models (events, sessions) from all raw data, and test and snapshot every raw row",
    )
    command.add_argument(
        "--verbose", "-v", action="store_true", help="also show dbt's line per model and test"
    )
    command.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        metavar="SECONDS",
        help="when another run is using the warehouse (another `greenery run`, or a run the daemon "
        "started), wait up to this long for it to end, saying which run it is (default 3600; 0 refuses "
        "at once); exit code 3 if it is still in use",
    )
    command.set_defaults(command=run)

    command = commands.add_parser(
        "docs", help="serve the published dbt docs on 127.0.0.1, and the funnel report at /report"
    )
    command.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    command.set_defaults(command=docs)

    command = commands.add_parser(
        "ui", help="start the Dagster webserver and daemon on 127.0.0.1; Ctrl-C or SIGTERM stops both"
    )
    command.add_argument("--port", type=int, default=3000, help="webserver port (default 3000)")
    command.set_defaults(command=ui)

    from greenery_orchestration.marts import FUNNEL_MARTS  # noqa: PLC0415 - loads Dagster

    command = commands.add_parser("funnel", help="print the funnel marts as tables")
    command.add_argument(
        "--by", choices=list(FUNNEL_MARTS), default="step",
        help="which mart: sessions per step (default), users per step, per product, per day, time to convert "
        "between steps, or per buyer type, state and high-volume user",
    )
    command.set_defaults(command=funnel)
    return parser


if __name__ == "__main__":
    sys.exit(main())
