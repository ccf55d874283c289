"""Core models (handlers.core_models): what the worker, reconciliation and the collector check
their inputs with, so their cold start imports no pydantic (issue 14's 1.5x budget)."""

from __future__ import annotations

import json
import subprocess
import sys
import typing

import pytest
from pydantic_core import ValidationError

from bench.coldstart import function_env
from handlers import events, settings
from handlers.core_models import CoreModel, core_model, core_schema, field

pytestmark = pytest.mark.unit

CORE_MODELS = [
    settings.TableSettings,
    settings.CollectorSettings,
    events._Bucket,
    events._Object,
    events._S3,
    events.S3Record,
    events.S3Notification,
    events._SqsMessage,
    events.SqsBatch,
    events.ReconcileRequest,
]


def _schema_fields(model: type[CoreModel]) -> set[str]:
    schema: typing.Any = model.__core_schema__
    while schema["type"] != "model":  # an after-validator wraps the model
        schema = schema["schema"]
    return set(schema["schema"]["fields"])


@pytest.mark.parametrize("model", CORE_MODELS, ids=lambda m: m.__name__)
def test_a_core_models_annotations_and_schema_name_the_same_fields(model: type[CoreModel]) -> None:
    # The annotations are what readers and mypy see; the schema is what validation fills.
    annotated = set(typing.get_type_hints(model, localns=vars(events)))
    annotated -= set(typing.get_type_hints(CoreModel))  # the validator and schema class vars

    assert annotated == _schema_fields(model)


@pytest.mark.parametrize("module", ["handlers.worker", "handlers.reconcile", "handlers.collector"])
def test_the_functions_that_must_start_fast_import_no_pydantic(module: str) -> None:
    # Given a fresh interpreter with a function's settings, as Lambda starts one
    code = (
        f"import sys, json\nimport {module}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=function_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )

    # Then pydantic's model machinery was never imported (pydantic_core was)
    assert json.loads(done.stdout.splitlines()[-1]) == []


@core_model(
    {
        "name": field(core_schema.str_schema(min_length=1), "Name"),
        "size": field(core_schema.int_schema(ge=0), default=0),
        "tags": field(core_schema.list_schema(core_schema.str_schema()), default_factory=list),
    }
)
class _Example(CoreModel):
    name: str
    size: int
    tags: list[str]


def test_a_core_model_fills_its_fields_from_their_aliases_and_defaults() -> None:
    example = _Example.model_validate({"Name": "a.pdf", "unlisted": True})

    assert vars(example) == {"name": "a.pdf", "size": 0, "tags": []}
    assert example == _Example.model_validate_json('{"Name": "a.pdf"}')
    assert repr(example) == "_Example(name='a.pdf', size=0, tags=[])"
    # Each instance gets its own default list
    assert example.tags is not _Example.model_validate({"Name": "b"}).tags


def test_a_core_model_refuses_bad_input_with_pydantics_errors() -> None:
    with pytest.raises(ValidationError) as raised:
        _Example.model_validate({"Name": "", "size": -1})

    assert raised.value.title == "_Example"
    assert [(e["loc"], e["type"]) for e in raised.value.errors()] == [
        (("Name",), "string_too_short"),
        (("size",), "greater_than_equal"),
    ]


def test_settings_refuse_a_missing_table_and_name_it() -> None:
    env = {k: v for k, v in function_env().items() if k != "HOLDINGS_TABLE"}

    with pytest.raises(ValidationError, match="HOLDINGS_TABLE"):
        settings.parse_table_settings(env)
