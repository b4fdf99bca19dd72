"""The jobs' CloudWatch Logs streams, read into the attempts' live log files: while a job runs
(every `follow_logs_seconds`, so `taskfabric executions logs --follow` prints its lines as
they come) and once more when it ends, each read going on from where the last one stopped."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from taskfabric.logs import get_logger
from taskfabric.plugin_api import LogLink

__all__ = ["LogCursor", "LogReader"]

log = get_logger("taskfabric.aws")

#: Most pages of one read (10,000 events or 1 MB each): a runaway stream is read in slices.
MAX_PAGES = 100


@dataclass
class LogCursor:
    """How far one attempt's stream has been read into its live log file."""

    stream: str = ""
    #: The `nextForwardToken` of the last read; None before the first read in this process.
    token: str | None = None
    #: `time.monotonic()` of the last read.
    read_at: float = 0.0


class LogReader:
    """Reads streams of one log group with `client` (a boto3 `logs` client), paying each
    call with `pay()` (a token of the backend's pool)."""

    def __init__(self, client: Any, group: str, region: str, pay: Callable[[], None]) -> None:
        self.client = client
        self.group = group
        self.region = region
        self.pay = pay

    def console_link(self, stream: str) -> LogLink:
        """The stream's page in the AWS console."""
        group = quote(quote(self.group, safe=""), safe="")
        url = (
            f"https://{self.region}.console.aws.amazon.com/cloudwatch/home?region={self.region}"
            f"#logsV2:log-groups/log-group/{group}/log-events/{quote(quote(stream, safe=''))}"
        )
        return LogLink("cloudwatch", url)

    def due(self, cursor: LogCursor, every: float) -> bool:
        """Whether a running job's stream is to be read now (`every` 0: never while it runs)."""
        return every > 0 and time.monotonic() - cursor.read_at >= every

    def read(self, cursor: LogCursor, stream: str, path: Path) -> None:
        """Append what `stream` holds beyond `cursor` to `path`. The first read in this
        process starts the file afresh (an earlier engine process may have left part of it);
        a stream that changed is read again from its start. Never raises: a log is not worth
        failing a task."""
        cursor.read_at = time.monotonic()
        if stream != cursor.stream:
            cursor.stream, cursor.token = stream, None
        mode = "a" if cursor.token is not None else "w"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open(mode, encoding="utf-8") as out:
                for _ in range(MAX_PAGES):
                    kwargs: dict[str, Any] = {
                        "logGroupName": self.group,
                        "logStreamName": stream,
                        "startFromHead": True,
                    }
                    if cursor.token is not None:
                        kwargs["nextToken"] = cursor.token
                    self.pay()
                    page = self.client.get_log_events(**kwargs)
                    events = page.get("events", [])
                    for event in events:
                        out.write(str(event.get("message", "")).rstrip("\n") + "\n")
                    out.flush()  # followers read the file as it grows
                    token = page.get("nextForwardToken")
                    done = not events or token == cursor.token
                    cursor.token = token
                    if done:
                        break
        except Exception as exc:
            response = getattr(exc, "response", None)
            error = response.get("Error") if isinstance(response, dict) else None
            if isinstance(error, dict) and error.get("Code") == "ResourceNotFoundException":
                return  # no line written yet: the stream comes with the first
            with contextlib.suppress(Exception):
                log.warning("could not read the job's log", stream=stream, error=f"{exc!r}")
