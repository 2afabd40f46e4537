"""The audit stream: each committed audit row, as one JSON object, to a file (JSON Lines) and
or a syslog receiver, for a SIEM (ELK, Splunk, Graylog) to index as the rows happen.

Python's logging does the I/O: a ``WatchedFileHandler`` (reopens the file when logrotate
moves it) and a ``SysLogHandler`` (UDP, or TCP framed by newlines), behind a queue whose
listener thread writes, so the event loop never waits on a disk or a network. A receiver that
is down loses what is sent meanwhile (syslog's own contract); the database's audit log stays
the record of truth.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import socket
from typing import Any

import orjson

from seekport.config.audit_stream import AuditStreamConfig

MAX_QUEUED = 100_000  # rows waiting for the writer at most; beyond, new ones are dropped


class _Line(logging.Formatter):
    def __init__(self, newline: bool) -> None:
        super().__init__()
        self._end = "\n" if newline else ""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.getMessage()}{self._end}"


class AuditStream:
    def __init__(self, config: AuditStreamConfig) -> None:
        handlers: list[logging.Handler] = []
        if config.jsonl is not None:
            path = config.jsonl.expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            file = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
            file.setFormatter(_Line(newline=False))  # the handler ends each record
            handlers.append(file)
        if config.syslog is not None:
            scheme, _, rest = config.syslog.partition("://")
            host, _, port = rest.rpartition(":")
            tcp = scheme == "tcp"
            sink = logging.handlers.SysLogHandler(
                address=(host.strip("[]"), int(port)),
                facility=config.facility,
                socktype=socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM,
            )
            sink.append_nul = False
            sink.ident = "seekport: "
            sink.setFormatter(_Line(newline=tcp))
            handlers.append(sink)
        self._queue: queue.Queue[logging.LogRecord] = queue.Queue(MAX_QUEUED)
        self._listener = logging.handlers.QueueListener(self._queue, *handlers)
        self._handlers = handlers
        self._logger = logging.getLogger(f"seekport.audit.stream.{id(self)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._logger.addHandler(logging.handlers.QueueHandler(self._queue))
        self._listener.start()

    @classmethod
    def of(cls, config: AuditStreamConfig) -> AuditStream | None:
        """A stream when the config names a sink, else None."""
        if config.jsonl is None and config.syslog is None:
            return None
        return cls(config)

    def send(self, rows: list[dict[str, Any]]) -> None:
        """Queue the rows (never blocks: a full queue drops them, and the log says so)."""
        for row in rows:
            line = orjson.dumps(row).decode()  # datetimes as RFC 3339
            try:
                self._logger.info(line)
            except queue.Full:  # pragma: no cover - QueueHandler reports through handleError
                return

    def close(self) -> None:
        """Write what is queued, then close the sinks."""
        self._listener.stop()
        for h in self._handlers:
            h.close()
