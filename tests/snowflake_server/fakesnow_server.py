"""fakesnow's HTTP server on 127.0.0.1, its databases kept as files in DIR, for clients in other
processes: `python fakesnow_server.py DIR`. Prints the port it listens on, then serves until SIGTERM.

Not `python -m fakesnow -s -p PORT -d DIR`: in fakesnow 0.12 server mode ignores `-d` and keeps
every database in memory. Two gaps between fakesnow and what the real Snowflake client sends are
bridged here, at the HTTP boundary, so that clients run their own code unchanged:

- `write_pandas` (snowflake-connector-python 4.x) copies from its stage as a string literal,
  `COPY INTO ... FROM (SELECT $1:"a" FROM '@db.schema.stage')`, which fakesnow rejects ("invalid
  URL prefix found in"); Snowflake reads both spellings alike, so the literal is unquoted.
- fakesnow answers a statement it crashes on with HTTP 500, which the connector retries until its
  network_timeout, and dbt-snowflake sets none: dbt would hang for good. The 500 is turned into
  the error response Snowflake gives a failed statement, so the client raises at once.
"""

import gzip
import json
import logging
import re
import socket
import sys

COPY_FROM_STAGE_LITERAL = re.compile(r"(\bFROM\s+)'(@[^']*)'", re.IGNORECASE)
QUERY_PATH = "/queries/v1/query-request"


class SnowflakeClientBridge:
    """ASGI middleware around fakesnow's app; see the module's docstring for what it changes."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != QUERY_PATH:
            await self.app(scope, receive, send)
            return
        body, gzipped = await _read_body(receive)
        request = json.loads(gzip.decompress(body) if gzipped else body)
        sql = request.get("sqlText") or ""
        if sql.lstrip()[:9].upper() == "COPY INTO":
            request["sqlText"] = COPY_FROM_STAGE_LITERAL.sub(r"\1\2", sql)
        body = json.dumps(request).encode()
        if gzipped:
            body = gzip.compress(body)
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}

        delivered = False

        async def replayed():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        failed: dict = {}

        async def answer(message):
            if message["type"] == "http.response.start" and message["status"] == 500:
                failed["start"] = message
                return
            if failed and message["type"] == "http.response.body":
                failed.setdefault("body", b"")
                failed["body"] += message.get("body", b"")
                if not message.get("more_body"):
                    await _statement_error(send, failed["body"])
                return
            await send(message)

        await self.app(scope, replayed, answer)


async def _read_body(receive) -> tuple[bytes, bool]:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    return body, body[:2] == b"\x1f\x8b"


async def _statement_error(send, server_error: bytes) -> None:
    try:
        message = json.loads(server_error)["message"]
    except (ValueError, KeyError, TypeError):
        message = server_error.decode(errors="replace")
    answer = json.dumps({
        "data": {"errorCode": "261000", "sqlState": "XX000"},
        "code": "261000",
        "message": f"fakesnow cannot run this statement (see its server log): {message}",
        "success": False,
    }).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})


def _keep_null_timestamps() -> None:
    """fakesnow 0.12 sends a NULL timestamp as 1970-01-01: its struct of epoch and fraction drops
    the null mask. Put the mask back, so `max(loaded_at)` of no rows reads as NULL, as on Snowflake."""
    import fakesnow.arrow
    import pyarrow as pa

    as_struct = fakesnow.arrow.timestamp_to_sf_struct

    def with_nulls(ts):
        if isinstance(ts, pa.ChunkedArray):
            ts = ts.combine_chunks()
        struct = as_struct(ts)
        if ts.null_count == 0:
            return struct
        return pa.StructArray.from_arrays(struct.flatten(), fields=list(struct.type), mask=ts.is_null())

    fakesnow.arrow.timestamp_to_sf_struct = with_nulls


def main(data_dir: str) -> None:
    import fakesnow.server
    import uvicorn
    from fakesnow.instance import FakeSnow

    _keep_null_timestamps()
    # Every session shares one DuckDB with a file per Snowflake database, as one account would.
    fakesnow.server.shared_fs = FakeSnow(db_path=data_dir)
    fakesnow.server.logger.setLevel(logging.WARNING)
    listener = socket.create_server(("127.0.0.1", 0))  # a free port, taken before anyone else can
    print(listener.getsockname()[1], flush=True)
    config = uvicorn.Config(SnowflakeClientBridge(fakesnow.server.app), log_level="warning", lifespan="off")
    uvicorn.Server(config).run(sockets=[listener])


if __name__ == "__main__":
    main(sys.argv[1])
