"""``--log-format json``: one JSON object per log event, one per line.

twistd picks its log observer after the plugin has made its service, from
(in order) its ``--logger``, an ``ILogObserver`` component of the
application, or its ``--logfile``/``--syslog``/``-n`` choice of file. A
plugin cannot reach the application from ``makeService``, so the root
service puts the observer on the application when twistd makes it the
root's parent, writing to the very file twistd would have (standard output
under ``-n``, else ``--logfile`` or ``twistd.log``). Under ``twist`` (which
has no application) the observer factory is handed to its options instead.

Events are written by Twisted's ``jsonFileLogObserver`` without its record
separator (``\\x1e``), so that each line is a JSON document by itself.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from twisted.application.service import IService, MultiService
from twisted.logger import ILogObserver, LogEvent, formatEvent, jsonFileLogObserver
from twisted.python import usage
from twisted.python.logfile import LogFile
from zope.interface import implementer

FORMATS = ("text", "json")


@implementer(ILogObserver)
class _WithMessage:
    """Adds ``message``, the event's text as the text log would show it."""

    def __init__(self, observer: ILogObserver) -> None:
        self._observer = observer

    def __call__(self, event: LogEvent) -> None:
        self._observer({**event, "message": formatEvent(event)})


def json_observer(out: IO[Any]) -> ILogObserver:
    """Every event as a line of JSON on ``out``, with its formatted ``message``."""
    return _WithMessage(jsonFileLogObserver(out, recordSeparator=""))


def check(parent: Any) -> None:
    """Refuse what a JSON log cannot go with, before anything starts."""
    if parent is None:
        return
    if parent.get("logger"):
        raise usage.UsageError(
            "--log-format json and twistd's --logger both choose the log"
            " observer: give one"
        )
    if parent.get("syslog"):
        raise usage.UsageError("--log-format json writes a file, not to syslog")


def twistd_file(parent: Any) -> IO[Any]:
    """The file twistd would write its log to, by its own options."""
    name = parent.get("logfile") or ""
    if name == "-" or (parent.get("nodaemon") and not name):
        return sys.stdout
    return LogFile.fromFullPath(name or "twistd.log")


class JsonLoggingRoot(MultiService):
    """The root service, which gives twistd's application its log observer."""

    def __init__(self, parent_options: Any) -> None:
        super().__init__()
        self._options = parent_options
        self._observer: ILogObserver | None = None

    def setServiceParent(self, parent: Any) -> None:
        super().setServiceParent(parent)
        set_component = getattr(parent, "setComponent", None)
        if set_component is not None and self._observer is None:
            self._observer = json_observer(twistd_file(self._options))
            set_component(ILogObserver, self._observer)


def json_root(parent_options: Any) -> IService:
    """The root service under ``--log-format json``, for twistd or ``twist``."""
    if parent_options is not None and "fileLogObserverFactory" in parent_options:
        # ``twist``: it opens the file (--log-file) and asks for an observer.
        parent_options["fileLogObserverFactory"] = json_observer
        return MultiService()
    return JsonLoggingRoot(parent_options or {})
