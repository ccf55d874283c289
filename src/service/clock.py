import time
from datetime import UTC, datetime


def utcnow() -> datetime:
    # Millisecond precision keeps ISO strings short and round-trips exactly through DynamoDB.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def sleep(seconds: float) -> None:
    # Indirect so that tests can make waiting instantaneous.
    time.sleep(seconds)


def monotonic() -> float:
    # Indirect with sleep, so that tests making waiting instantaneous also move this clock.
    return time.monotonic()
