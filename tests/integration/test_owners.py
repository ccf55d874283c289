"""Two owners, one service: nothing bob observes depends on what alice holds or does.

Hypothesis drives alice and bob through the API handler and the worker, in-process against moto,
over a pool of three contents: they create uploads (declaring the hash or not, single PUT or in
parts), PUT the right or the wrong bytes, let the worker decide, probe each other's upload ids and
hashes, and abort. It runs two worlds side by side: in "both" alice and bob act; in "bob only"
alice does nothing. After every step bob's observations (status codes, bodies minus ids and
timestamps, headers, statuses) must be the same in both worlds, and each world's stored facts and
admin counters must satisfy every invariant (tests/invariants.py).

75 runs of up to 10 steps by default (about a minute on a busy 2-core machine; set
ONECOPY_OWNER_EXAMPLES for more). Each of these planted leaks fails it within a few runs: a hash
lookup that answers differently when another owner holds the content, a pre-check that answers
409 for it, and an ownership check that lets anyone through.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import urlencode, urlsplit

import boto3
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from adapters import clients
from adapters.dynamodb import Ledger
from adapters.s3 import ObjectStore
from handlers import wiring
from handlers.settings import WorkerSettings, parse_table_settings
from onecopy_local.resources import Resources, create_resources
from tests import faults
from tests.invariants import check_invariants
from tests.lambda_events import http_event, s3_notification, sqs_event
from tests.pipeline import FakeContext

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("ONECOPY_OWNER_EXAMPLES", "75"))
STEPS = 10
settings.register_profile(
    "onecopy-owners",
    parent=settings.get_profile("default"),
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
    # No shrinking: each example costs real (moto) calls, and a failing run of ten steps reads
    # well enough as it is; shrinking one takes minutes.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
SETTINGS = settings.get_profile("onecopy-owners")

# Two of one size, so wrong bytes of the right size fail only the hash check.
CONTENTS = (b"alpha", b"bravo", b"a somewhat longer third content\n")
ALICE, BOB = "alice-sub", "bob-sub"
MAX_UPLOADS = 4  # per owner
# Fields whose value is a time, or a URL's signature: they differ between any two runs.
_VOLATILE = {"created_at", "completed_at", "expires_at"}
VIEW = faults.MotoView()  # reads moto's backends directly: the invariants cost no requests


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class World:
    """One isolated set of the template's resources, and the adapters the handlers use on it."""

    name: str
    resources: Resources
    ledger: Ledger
    store: ObjectStore
    worker_settings: WorkerSettings
    # Per owner, the upload ids created in this world, in order, with what they were for.
    uploads: dict[str, list[Upload]] = field(default_factory=dict)


@dataclass
class Upload:
    upload_id: str | None  # None: not created (a 4xx other than the 409 pre-check)
    content: bytes
    multipart: bool
    put: bool = False


@dataclass(frozen=True)
class Seen:
    """One observation, comparable across worlds."""

    status: int
    body: Any
    headers: tuple[tuple[str, str], ...]


class Twins:
    """Switch the handlers between worlds: their adapters and the worker's bucket setting."""

    def __init__(self, api: ModuleType, worker: Any, worlds: list[World]) -> None:
        self.api, self.worker, self.worlds = api, worker, worlds
        self.current = worlds[0]
        self._settings = worker.settings
        self.s3 = clients.s3()

    def enter(self, world: World) -> None:
        self.current = world
        # The worker ignores events for any bucket but its own (a setting read at import).
        self.worker.settings = world.worker_settings

    def restore(self) -> None:
        self.worker.settings = self._settings


@pytest.fixture
def twins(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Iterator[Twins]:
    from handlers import api, worker

    session = boto3.DEFAULT_SESSION or boto3.Session()
    worlds = []
    for name, resources in (("both", aws), ("bob only", create_resources(session, prefix="twin"))):
        s3 = session.client("s3")
        # The machine runs the worker itself, once per PUT; no queue in between.
        s3.put_bucket_notification_configuration(
            Bucket=resources.bucket, NotificationConfiguration={}
        )
        env = resources.function_env()
        worlds.append(
            World(
                name=name,
                resources=resources,
                ledger=Ledger(
                    clients.dynamodb(),
                    uploads_table=resources.uploads_table,
                    contents_table=resources.contents_table,
                    holdings_table=resources.holdings_table,
                    stats_table=resources.stats_table,
                    stats_shards=resources.stats_shards,
                ),
                store=ObjectStore(clients.s3(), clients.s3_presigner(), resources.bucket),
                worker_settings=parse_table_settings(env),
            )
        )
    rig = Twins(api, worker, worlds)
    # The handlers reach their adapters through wiring: point it at the current world.
    monkeypatch.setattr(wiring, "ledger", lambda: rig.current.ledger)
    monkeypatch.setattr(wiring, "store", lambda: rig.current.store)
    yield rig
    rig.restore()


class Owners(RuleBasedStateMachine):
    def __init__(self, rig: Twins) -> None:
        super().__init__()
        self.rig = rig
        for world in rig.worlds:
            faults.wipe(world.resources)
            world.uploads = {ALICE: [], BOB: []}
        self.both, self.solo = rig.worlds
        self.steps = 0

    # --- driving one world ---------------------------------------------------------------------

    def _call(
        self, world: World, sub: str, method: str, path: str, body: Any = None, **query: str
    ) -> Seen:
        self.rig.enter(world)
        event = http_event(method, path, body, sub=sub)
        if query:
            event["rawQueryString"] = urlencode(query)
            event["queryStringParameters"] = query
        response = self.rig.api.lambda_handler(event, FakeContext())
        text = response.get("body") or "null"
        headers = tuple(sorted((response.get("headers") or {}).items()))
        return Seen(int(response["statusCode"]), json.loads(text), headers)

    def _deliver(self, world: World, upload_id: str, data: bytes) -> None:
        """The client's PUT to staging, then the worker's run on S3's notification of it."""
        self.rig.enter(world)
        key = f"staging/{upload_id}"
        put = self.rig.s3.put_object(Bucket=world.resources.bucket, Key=key, Body=data)
        event = sqs_event(
            s3_notification(
                key, size=len(data), etag=put["ETag"].strip('"'), bucket=world.resources.bucket
            )
        )
        response = self.rig.worker.lambda_handler(event, FakeContext())
        assert response == {"batchItemFailures": []}, (world.name, response)

    def _normalize(self, world: World, seen: Seen) -> Seen:
        """What bob sees with this world's own names (his upload ids, the bucket) made generic."""
        names = {
            u.upload_id: f"<bob #{i}>" for i, u in enumerate(world.uploads[BOB]) if u.upload_id
        }
        names[world.resources.bucket] = "<bucket>"

        def clean(value: Any, key: str = "") -> Any:
            if isinstance(value, dict):
                return {k: clean(v, k) for k, v in value.items() if k not in _VOLATILE}
            if isinstance(value, list):
                return [clean(v) for v in value]
            if isinstance(value, str):
                if key in ("url", "Location"):
                    value = urlsplit(value)._replace(query="").geturl()  # the signature
                for name, generic in names.items():
                    value = value.replace(name, generic)
            return value

        return Seen(seen.status, clean(seen.body), tuple(clean(dict(seen.headers)).items()))

    def _bob(self, action: Callable[[World], Seen | None]) -> None:
        """Bob acts the same way in both worlds; what he sees must not differ."""
        seen_both, seen_solo = (action(world) for world in self.rig.worlds)
        if seen_both is not None and seen_solo is not None:
            both = self._normalize(self.both, seen_both)
            solo = self._normalize(self.solo, seen_solo)
            assert both == solo, f"bob's view depends on alice:\n  {both}\n  {solo}"

    # --- creating uploads ----------------------------------------------------------------------

    def _create(self, world: World, sub: str, content: bytes, declare: bool, parts: bool) -> Seen:
        body: dict[str, Any] = {"filename": f"{sub}.bin", "size": len(content)}
        if declare:
            body["sha256"] = _sha(content)
        if parts:
            body["multipart"] = True
        seen = self._call(world, sub, "POST", "/uploads", body)
        # A 409 names the DUPLICATE upload it recorded: it exists, already terminal.
        upload_id = seen.body.get("upload_id") if seen.status in (201, 409) else None
        world.uploads[sub].append(Upload(upload_id, content, parts))
        return seen

    @precondition(lambda self: len(self.both.uploads[ALICE]) < MAX_UPLOADS)
    @rule(content=st.sampled_from(CONTENTS), declare=st.booleans(), parts=st.booleans())
    def alice_creates(self, content: bytes, declare: bool, parts: bool) -> None:
        self._create(self.both, ALICE, content, declare, parts)

    @precondition(lambda self: len(self.both.uploads[BOB]) < MAX_UPLOADS)
    @rule(content=st.sampled_from(CONTENTS), declare=st.booleans(), parts=st.booleans())
    def bob_creates(self, content: bytes, declare: bool, parts: bool) -> None:
        self._bob(lambda world: self._create(world, BOB, content, declare, parts))

    @precondition(lambda self: len(self.both.uploads[ALICE]) < MAX_UPLOADS)
    @rule(content=st.sampled_from(CONTENTS), declare=st.booleans())
    def alice_uploads(self, content: bytes, declare: bool) -> None:
        """The usual client: create, then PUT exactly the declared bytes at once."""
        self._create(self.both, ALICE, content, declare, parts=False)
        self._put(self.both, ALICE, -1, right=True)

    @precondition(lambda self: len(self.both.uploads[BOB]) < MAX_UPLOADS)
    @rule(content=st.sampled_from(CONTENTS), declare=st.booleans())
    def bob_uploads(self, content: bytes, declare: bool) -> None:
        def upload(world: World) -> Seen:
            created = self._create(world, BOB, content, declare, parts=False)
            self._put(world, BOB, -1, right=True)
            return created

        self._bob(upload)

    # --- the bytes arriving --------------------------------------------------------------------

    def _put(self, world: World, sub: str, index: int, right: bool) -> None:
        mine = world.uploads[sub]
        upload = mine[index % len(mine)]
        if upload.upload_id is None or upload.multipart or upload.put:
            # Nothing to PUT: refused, a 409, parts (pending until aborted), or already sent (the
            # presigned PUT carries If-None-Match: a staging key is written once).
            return
        upload.put = True
        # Wrong bytes of the right size: a declared hash rejects them, else they are new content.
        self._deliver(world, upload.upload_id, upload.content if right else upload.content[::-1])

    @precondition(lambda self: self.both.uploads[ALICE])
    @rule(index=st.integers(0, MAX_UPLOADS - 1), right=st.booleans())
    def alice_puts(self, index: int, right: bool) -> None:
        self._put(self.both, ALICE, index, right)

    @precondition(lambda self: self.both.uploads[BOB])
    @rule(index=st.integers(0, MAX_UPLOADS - 1), right=st.booleans())
    def bob_puts(self, index: int, right: bool) -> None:
        def put(world: World) -> None:
            self._put(world, BOB, index, right)

        self._bob(put)

    # --- aborting --------------------------------------------------------------------------------

    @precondition(lambda self: self.both.uploads[ALICE])
    @rule(index=st.integers(0, MAX_UPLOADS - 1))
    def alice_aborts(self, index: int) -> None:
        mine = self.both.uploads[ALICE]
        upload = mine[index % len(mine)]
        if upload.upload_id:
            self._call(self.both, ALICE, "DELETE", f"/uploads/{upload.upload_id}")

    @precondition(lambda self: self.both.uploads[BOB])
    @rule(index=st.integers(0, MAX_UPLOADS - 1))
    def bob_aborts(self, index: int) -> None:
        def abort(world: World) -> Seen | None:
            mine = world.uploads[BOB]
            upload = mine[index % len(mine)]
            if not upload.upload_id:
                return None
            return self._call(world, BOB, "DELETE", f"/uploads/{upload.upload_id}")

        self._bob(abort)

    # --- bob probing what alice may hold -------------------------------------------------------

    @precondition(lambda self: self.both.uploads[ALICE])
    @rule(
        index=st.integers(0, MAX_UPLOADS - 1),
        probe=st.sampled_from(
            [
                ("GET", "/uploads/{}", None),
                ("DELETE", "/uploads/{}", None),
                ("GET", "/uploads/{}/parts", None),
                ("POST", "/uploads/{}/parts", {"part_numbers": [1]}),
                ("POST", "/uploads/{}/complete", {"parts": [{"part_number": 1, "etag": "e"}]}),
                ("GET", "/metadata/{}", None),
                ("GET", "/download/{}", None),
            ]
        ),
    )
    def bob_probes_alice_s_upload(self, index: int, probe: tuple[str, str, Any]) -> None:
        # The id exists in the world where alice acted, and nowhere in the other.
        theirs = self.both.uploads[ALICE]
        upload_id = theirs[index % len(theirs)].upload_id or "0" * 32
        method, path, body = probe
        self._bob(lambda world: self._call(world, BOB, method, path.format(upload_id), body))

    @rule(content=st.sampled_from(CONTENTS), what=st.sampled_from(["metadata", "download"]))
    def bob_probes_a_hash(self, content: bytes, what: str) -> None:
        self._bob(lambda world: self._call(world, BOB, "GET", f"/{what}/{_sha(content)}"))

    # --- after every step ----------------------------------------------------------------------

    @invariant()
    def bob_sees_the_same_uploads_in_both_worlds(self) -> None:
        for index in range(len(self.both.uploads[BOB])):

            def look(world: World, index: int = index) -> Seen | None:
                upload_id = world.uploads[BOB][index].upload_id
                return self._call(world, BOB, "GET", f"/uploads/{upload_id}") if upload_id else None

            self._bob(look)

    @invariant()
    def bob_sees_the_same_contents_in_both_worlds(self) -> None:
        for content in CONTENTS:
            path = f"/metadata/{_sha(content)}"

            def look(world: World, path: str = path) -> Seen:
                return self._call(world, BOB, "GET", path)

            self._bob(look)

    @invariant()
    def facts_and_counters_stay_exact(self) -> None:
        for world in self.rig.worlds:
            # Every upload whose bytes were sent has been decided: the worker ran on each PUT.
            settled = [
                u.upload_id for us in world.uploads.values() for u in us if u.upload_id and u.put
            ]
            check_invariants(world.resources, VIEW.s3, VIEW.ddb, settled=settled)


@pytest.mark.timeout(max(300, EXAMPLES * 2))
def test_nothing_bob_observes_depends_on_alice(
    twins: Twins, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.perf_counter()

    run_state_machine_as_test(lambda: Owners(twins), settings=SETTINGS)  # type: ignore[arg-type]

    with capsys.disabled():
        print(
            f"\nowners: max_examples={EXAMPLES}, {STEPS} steps each, "
            f"in {time.perf_counter() - started:.1f} s"
        )
