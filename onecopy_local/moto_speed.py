"""Two places where moto spends time in proportion to the wrong thing, and the local fix.

DynamoDB transactions in the emulator that cost what they touch, not what the tables hold:

moto makes TransactWriteItems atomic by deep-copying every table the transaction names before
applying it, and putting the copies back if any part fails. That is O(items in the tables) per
transaction: with a few thousand uploads it was a third of the local stack's CPU time (measured
with py-spy during tests/e2e/test_concurrency_1000.py), and every upload makes several
transactions, so the stack slowed down as its tables grew.

A transaction can only change the items it names (one operation per item, which moto checks), so
a copy of those items is enough to undo it. `install()` makes moto's table copies no-ops and wraps
TransactWriteItems to save the named items first and put them back if the transaction raises
anything (moto's own rollback then puts back the very table objects it already holds). The
emulator serializes requests, so nothing else sees the items in between, as before.

moto's server also lists its own package directory (an `isdir` per service) on every request to
find which service a host names; the list cannot change while the process runs, so it is kept.

And moto parses the same private key (its bundled `jwks-private.json`) for every user pool it
creates, ~0.2 s of RSA checks each time; every pool gets that one key, so it is parsed once
(`share_user_pool_key`, which the tests' in-process moto uses too: a user pool per test).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

from moto import backends
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table

_Saved = tuple[Table, DynamoType, DynamoType | None, Item | None]


def _deepcopy_but_tables(value: Any, memo: dict[int, Any] | None = None) -> Any:
    # moto's transaction is the only caller that copies whole tables; its rollback is ours now.
    return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _named_items(backend: DynamoDBBackend, transact_items: Iterable[Any]) -> list[_Saved]:
    """A copy of each item the transaction names (None: absent), before it runs."""
    saved: list[_Saved] = []
    for entry in transact_items:
        if not isinstance(entry, dict) or len(entry) != 1:
            continue  # moto refuses the request before changing anything
        (op,) = entry.values()
        if not isinstance(op, dict):
            continue
        table = backend.tables.get(op.get("TableName", ""))
        attributes = op.get("Item", op.get("Key"))
        if table is None or not isinstance(attributes, dict):
            continue
        try:
            hash_value = DynamoType(attributes[table.hash_key_attr])
            range_value = (
                DynamoType(attributes[table.range_key_attr]) if table.range_key_attr else None
            )
            current = table.get_item(hash_value, range_value)
        except Exception:  # noqa: S112 - a malformed key: moto refuses it before any write
            continue
        saved.append((table, hash_value, range_value, copy.deepcopy(current)))
    return saved


def _put_back(saved: list[_Saved]) -> None:
    for table, hash_value, range_value, item in reversed(saved):
        if range_value is not None:
            if item is None:
                table.items.get(hash_value, {}).pop(range_value, None)
            else:
                table.items[hash_value][range_value] = item
        elif item is None:
            table.items.pop(hash_value, None)
        else:
            table.items[hash_value] = item  # type: ignore[assignment]  # moto's own typing


def install() -> None:
    """Patch moto (in this process) once; later calls change nothing."""
    _cache_module_list()
    _item_level_transactions()
    share_user_pool_key()


def share_user_pool_key() -> None:
    """Parse moto's user pool signing key once per process, not once per user pool."""
    from moto.cognitoidp import models as cognito_models

    if isinstance(cognito_models.jwk, SimpleNamespace):
        return
    import_key = cognito_models.jwk.RSAKey.import_key

    @functools.cache
    def parsed(serialized: str) -> Any:
        return import_key(json.loads(serialized))

    def shared(value: Any) -> Any:
        # The key is only ever read (to sign tokens), so one object can serve every pool.
        return parsed(json.dumps(value, sort_keys=True))

    cognito_models.jwk = SimpleNamespace(RSAKey=SimpleNamespace(import_key=shared))  # type: ignore[assignment]


def _cache_module_list() -> None:
    listed = backends.list_of_moto_modules
    if not isinstance(listed, functools._lru_cache_wrapper):
        modules = functools.cache(lambda: tuple(listed()))
        backends.list_of_moto_modules = modules


def _item_level_transactions() -> None:
    original: Callable[[DynamoDBBackend, list[dict[str, Any]]], None] = (
        DynamoDBBackend.transact_write_items
    )
    if getattr(original, "_item_level", False):
        return

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        saved = _named_items(self, transact_items)
        try:
            original(self, transact_items)
        except BaseException:
            _put_back(saved)
            raise

    transact_write_items._item_level = True  # type: ignore[attr-defined]
    dynamodb_models.copy = SimpleNamespace(deepcopy=_deepcopy_but_tables)  # type: ignore[assignment]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
