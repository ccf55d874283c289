"""Boundary models checked by pydantic's core alone, for the functions that must start fast.

Importing `pydantic` and building its first model costs ~0.3x `import boto3` at every cold
start, more than the worker, reconciliation and the collector may add in all (issue 14's 1.5x
budget; bench/README.md, "the floors"). These functions check their settings and events with
`pydantic_core` validators instead: the engine `pydantic` itself runs, so the same parsing,
constraints, aliases, `ValidationError` class and messages, without the model machinery. The
API keeps pydantic models: Powertools' request validation and OpenAPI document are built on them.

A model is a plain class whose annotations are for readers and mypy, and whose schema is given
once beside it with ``@core_model({...})``; `tests/unit/test_core_models.py` checks that the two
name the same fields. Instances are filled by the validator, never constructed by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Self

from pydantic_core import SchemaValidator, core_schema

__all__ = ["CoreModel", "core_model", "core_schema", "field"]


class CoreModel:
    """Base of the models below: validation in, attributes out."""

    # Where pydantic_core keeps its bookkeeping, so that vars() holds the fields alone.
    __slots__ = (
        "__dict__",
        "__pydantic_extra__",
        "__pydantic_fields_set__",
        "__pydantic_private__",
    )

    __core_schema__: ClassVar[core_schema.CoreSchema]
    __validator__: ClassVar[SchemaValidator]

    @classmethod
    def model_validate(cls, data: object) -> Self:
        validated: Self = cls.__validator__.validate_python(data)
        return validated

    @classmethod
    def model_validate_json(cls, data: str | bytes) -> Self:
        validated: Self = cls.__validator__.validate_json(data)
        return validated

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in vars(self).items())
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)


def field(
    schema: core_schema.CoreSchema,
    alias: str | None = None,
    *,
    default: Any = core_schema.PydanticUndefined,
    default_factory: Callable[[], Any] | None = None,
) -> core_schema.ModelField:
    """One field: its schema, the name it has in the input, and what it is when absent."""
    if default is not core_schema.PydanticUndefined or default_factory is not None:
        schema = core_schema.with_default_schema(
            schema, default=default, default_factory=default_factory
        )
    return core_schema.model_field(schema, validation_alias=alias)


def core_model(
    fields: dict[str, core_schema.ModelField],
    *,
    after: Callable[[Any], Any] | None = None,
) -> _Define:
    """Give a CoreModel subclass its schema and validator (input fields not listed are ignored).

    ``after`` runs on the filled instance and returns it, or raises ValueError to reject it.
    """
    return _Define(fields, after)


class _Define:
    def __init__(
        self, fields: dict[str, core_schema.ModelField], after: Callable[[Any], Any] | None
    ) -> None:
        self._fields, self._after = fields, after

    def __call__[M: CoreModel](self, cls: type[M]) -> type[M]:
        # The title names the model in errors, also when an after-validator wraps it.
        config = core_schema.CoreConfig(title=cls.__name__)
        schema: core_schema.CoreSchema = core_schema.model_schema(
            cls,
            core_schema.model_fields_schema(self._fields, model_name=cls.__name__),
            config=config,
        )
        if self._after is not None:
            schema = core_schema.no_info_after_validator_function(self._after, schema)
        cls.__core_schema__ = schema
        cls.__validator__ = SchemaValidator(schema, config)
        return cls
