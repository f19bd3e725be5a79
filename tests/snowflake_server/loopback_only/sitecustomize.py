"""Loaded at start-up by every Python process the Snowflake server tests launch (their PYTHONPATH
begins with this folder), and armed in the test process around each use of the server.

A Snowflake client does more than talk to its account: the connector probes cloud metadata
endpoints at login, dbt may send usage statistics. Tests must not leave 127.0.0.0/8, so every
connection or name lookup elsewhere is refused and written to GREENERY_TEST_OUTBOUND_LOG, which
the tests read: a refused attempt the client swallowed would otherwise go unnoticed.
"""

import ipaddress
import os
import sys

_log: str | None = None


def _local(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False  # a name to resolve: the lookup itself may leave the machine


def _hook(event, args):
    if _log is None:
        return
    if event == "socket.connect":
        address = args[1]
        if not isinstance(address, tuple):  # a Unix socket
            return
        host = address[0]
    elif event == "socket.getaddrinfo":
        host = args[0]
    else:
        return
    if _local(host):
        return
    with open(_log, "a", encoding="utf-8") as log:
        log.write(f"{os.getpid()} {event} {host}\n")
    raise OSError(f"tests connect to 127.0.0.0/8 only, not {host}")


def arm(log: str | None) -> None:
    """Refuse and record from now on (`log` a file), or stop (None)."""
    global _log
    _log = log


sys.addaudithook(_hook)  # a hook cannot be removed: arm(None) disarms it
arm(os.environ.get("GREENERY_TEST_OUTBOUND_LOG"))
