"""Log lines: text or JSON on stderr, each with the id of the request being
served (set by observability.Observe), for the service's own loggers and the
HTTP server's alike.

- :class:`TextFormatter` and :class:`JsonFormatter`: the two formats.
- :class:`RequestContextFilter`: the request id on every record.
- :func:`logging_config`: the logging.config.dictConfig dictionary of a format
  and level; :func:`configure_logging` applies it.

No log line here carries a header's value: API keys are named by their id.
"""

from __future__ import annotations

import logging
import logging.config
import time
import traceback
from typing import Any

import orjson

from .observability import printable, request_id


class RequestContextFilter(logging.Filter):
    """Puts the id of the request being served (if any) on every record, as
    ``record.request_id``. Also drops uvicorn's second report of an error
    that :class:`Observe` has logged already (with the request id)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.exc_info
            and getattr(record.exc_info[1], "_sessionstore_logged", False)
            and record.name.startswith("uvicorn")
        ):
            return False
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


def iso_time(seconds: float) -> str:
    millis = int(seconds * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class TextFormatter(logging.Formatter):
    """``2026-01-02T03:04:05.678Z INFO sessionstore.access: GET / 200 … request_id=…``"""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{iso_time(record.created)} {record.levelname} {record.name}: {printable(record.getMessage())}"
        rid = getattr(record, "request_id", None)
        if rid:
            line += f" request_id={rid}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id when
    there is one, the access log's fields, and an error's traceback."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            out["request_id"] = rid
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            out.update(access)
        audit = getattr(record, "audit", None)  # service/audit.py
        if isinstance(audit, dict):
            out.update(audit)
        if record.exc_info:
            out["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return orjson.dumps(out, default=str).decode()


LOG_FORMATS = ("text", "json")


def logging_config(log_format: str = "text", level: str = "info") -> dict[str, Any]:
    """A logging.config.dictConfig dictionary: every logger (uvicorn's too)
    to stderr in ``log_format``, with the request id. uvicorn's own access
    log is off: :class:`Observe` writes the access log."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": f"{__name__}.RequestContextFilter"}},
        "formatters": {"default": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["request"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }


def configure_logging(log_format: str = "text", level: str = "info") -> dict[str, Any]:
    """Logging of this process as :func:`logging_config` says (warnings
    too); the config, for the HTTP server to apply in its own processes."""
    config = logging_config(log_format, level)
    logging.config.dictConfig(config)
    logging.captureWarnings(True)
    return config
