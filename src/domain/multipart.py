"""Rules for multipart uploads: how a size is cut into parts, and what a valid completion is.

S3's limits: parts of 5 MiB to 5 GiB (the last may be smaller), at most 10,000 parts, objects up
to 5 TiB. A multipart object has no full-object SHA-256 (S3's is a hash of part hashes), so the
worker always streams it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from domain.errors import InvalidInput

MiB = 1024**2
GiB = 1024**3
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 * 1024 * GiB
DEFAULT_PART_SIZE = 16 * MiB
MAX_PARTS_PER_REQUEST = 100


@dataclass(frozen=True, slots=True)
class PartPlan:
    part_size: int
    part_count: int

    def size_of(self, part_number: int, total: int) -> int:
        """Bytes in one part: every part is part_size but the last, which holds the rest."""
        if part_number < self.part_count:
            return self.part_size
        return total - self.part_size * (self.part_count - 1)


@dataclass(frozen=True, slots=True)
class MultipartState:
    """What the service keeps about an upload that arrives in parts."""

    s3_upload_id: str
    plan: PartPlan
    assembled: bool = False  # S3 completed it: no more parts, no second completion


def plan_parts(size: int, preferred: int = DEFAULT_PART_SIZE) -> PartPlan:
    """The smallest whole-MiB part size >= preferred that keeps the count within 10,000."""
    if size < 1:
        raise InvalidInput("a multipart upload needs at least 1 byte")
    if size > MAX_OBJECT_SIZE:
        raise InvalidInput(f"size exceeds S3's object limit of {MAX_OBJECT_SIZE} bytes (5 TiB)")
    part_size = max(preferred, MIN_PART_SIZE, -(-size // MAX_PARTS))
    part_size = -(-part_size // MiB) * MiB
    part_size = min(part_size, MAX_PART_SIZE)
    return PartPlan(part_size=part_size, part_count=-(-size // part_size))


def check_part_numbers(numbers: Sequence[int], plan: PartPlan) -> list[int]:
    if not numbers:
        raise InvalidInput("part_numbers must not be empty")
    if len(numbers) > MAX_PARTS_PER_REQUEST:
        raise InvalidInput(f"at most {MAX_PARTS_PER_REQUEST} part numbers per request")
    if len(set(numbers)) != len(numbers):
        raise InvalidInput("part_numbers must not repeat")
    out_of_range = [n for n in numbers if not 1 <= n <= plan.part_count]
    if out_of_range:
        raise InvalidInput(f"part numbers must be between 1 and {plan.part_count}")
    return sorted(numbers)


def check_completion(parts: Sequence[tuple[int, str]], plan: PartPlan) -> list[tuple[int, str]]:
    """Every part 1..part_count exactly once, each with the ETag S3 returned for it."""
    numbers = [n for n, _ in parts]
    if sorted(numbers) != list(range(1, plan.part_count + 1)):
        raise InvalidInput(
            f"parts must list each part number from 1 to {plan.part_count} exactly once"
        )
    if any(not etag.strip() for _, etag in parts):
        raise InvalidInput("every part needs the ETag S3 returned for it")
    return sorted(parts)
