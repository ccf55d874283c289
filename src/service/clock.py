from datetime import UTC, datetime


def utcnow() -> datetime:
    # Millisecond precision keeps ISO strings short and round-trips exactly through DynamoDB.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
