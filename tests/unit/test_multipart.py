"""How sizes are cut into parts, and what a valid multipart completion is."""

import pytest

from domain.errors import InvalidInput
from domain.multipart import (
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    MiB,
    PartPlan,
    check_completion,
    check_part_numbers,
    plan_parts,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "size", [1, MIN_PART_SIZE, 64 * MiB, 100 * MiB + 1, 200 * 1024**3, MAX_OBJECT_SIZE]
)
def test_plans_stay_within_s3_limits(size: int) -> None:
    plan = plan_parts(size)
    assert MIN_PART_SIZE <= plan.part_size <= MAX_PART_SIZE
    assert plan.part_size % MiB == 0
    assert 1 <= plan.part_count <= MAX_PARTS
    assert plan.part_size * (plan.part_count - 1) < size <= plan.part_size * plan.part_count
    assert sum(plan.size_of(n, size) for n in range(1, plan.part_count + 1)) == size


def test_a_preferred_part_size_is_honoured_when_it_fits() -> None:
    assert plan_parts(64 * MiB, preferred=8 * MiB) == PartPlan(8 * MiB, 8)
    # Below S3's minimum it is raised to 5 MiB
    assert plan_parts(64 * MiB, preferred=1).part_size == MIN_PART_SIZE


@pytest.mark.parametrize("size", [0, -1, MAX_OBJECT_SIZE + 1])
def test_sizes_outside_the_limits_are_refused(size: int) -> None:
    with pytest.raises(InvalidInput):
        plan_parts(size)


def test_part_numbers() -> None:
    plan = PartPlan(16 * MiB, 4)
    assert check_part_numbers([3, 1], plan) == [1, 3]
    for bad in ([], [0], [5], [1, 1], list(range(1, 102))):
        with pytest.raises(InvalidInput):
            check_part_numbers(bad, PartPlan(MIN_PART_SIZE, 200) if len(bad) > 100 else plan)


def test_completion_needs_every_part_once_with_an_etag() -> None:
    plan = PartPlan(16 * MiB, 3)
    assert check_completion([(2, "b"), (1, "a"), (3, "c")], plan) == [(1, "a"), (2, "b"), (3, "c")]
    for bad in (
        [(1, "a"), (2, "b")],
        [(1, "a"), (2, "b"), (2, "b"), (3, "c")],
        [(1, "a"), (2, " "), (3, "c")],
    ):
        with pytest.raises(InvalidInput):
            check_completion(bad, plan)
