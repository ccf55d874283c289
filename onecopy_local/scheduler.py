"""EventBridge Scheduler, locally: invokes each ScheduleV2 event of template.yaml at its rate.

Only `rate(N unit)` expressions are understood (the template uses nothing else); a `cron(...)`
is refused at start rather than silently never run.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from onecopy_local.resources import Resources, resolve, template

log = logging.getLogger("onecopy_local")

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True, slots=True)
class Schedule:
    function: str
    every_seconds: float
    payload: Any


def rate_seconds(expression: str) -> int:
    match = _RATE.fullmatch(expression.strip())
    if match is None:
        raise ValueError(f"schedule {expression!r}: only rate(N minutes|hours|days) runs locally")
    return int(match[1]) * _SECONDS[match[2].rstrip("s")]


def template_schedules(
    resources: Resources, overrides: Mapping[str, str] | None = None
) -> list[Schedule]:
    schedules = []
    for logical_id, resource in template()["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event in (resource["Properties"].get("Events") or {}).values():
            if event.get("Type") != "ScheduleV2":
                continue
            props = event["Properties"]
            expression = str(resolve(props["ScheduleExpression"], resources, overrides))
            payload = json.loads(props["Input"]) if "Input" in props else {}
            schedules.append(Schedule(logical_id, rate_seconds(expression), payload))
    return schedules


class Scheduler:
    """One thread; each schedule first fires one period after start, as EventBridge's does."""

    def __init__(self, schedules: list[Schedule], invoke: Callable[[str, Any, str], Any]) -> None:
        self._schedules = schedules
        self._invoke = invoke
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)

    def start(self) -> Scheduler:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        elapsed = 0.0
        due = {id(s): s.every_seconds for s in self._schedules}
        while not self._stop.wait(1.0):
            elapsed += 1.0
            for schedule in self._schedules:
                if elapsed < due[id(schedule)]:
                    continue
                due[id(schedule)] = elapsed + schedule.every_seconds
                try:
                    self._invoke(schedule.function, schedule.payload, uuid.uuid4().hex)
                except Exception:  # a failed run is logged, and the next one still happens
                    log.exception("scheduled run of %s failed", schedule.function)
