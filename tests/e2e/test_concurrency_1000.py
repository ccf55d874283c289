"""1,000 clients, 50 contents, every S3 event delivered twice, 200 deletions and the collector
racing them: each content stored exactly once, nothing live lost, nothing dead left.

A dedicated stack (4 pollers, --duplicate-deliveries) so that the counters can be compared with
absolute numbers and every delivery of every event overlaps with others. Its grace period is a
few seconds (--collection-grace, CollectionGracePeriodSeconds) so that contents whose last upload
is deleted become collectable during the test, and its collector also runs on a schedule of one
minute besides the runs the test invokes. No upload declares its SHA-256: the API's 409
pre-check would otherwise answer some without a PUT, and every one must go through S3 and the
worker.

The uploads go in two waves of alice's and bob's (a quarter of them bob's):

1. 600 uploads, 20 of each of 30 contents, all at once; then
2. 400 more while 200 of the first wave's uploads are deleted and the collector is invoked twice:
   20 contents new to both owners (15 uploads each), 80 more of contents whose other uploads are
   being deleted, and 20 of bob's of contents whose every earlier upload of his is being deleted.
   The deletions: every upload of 4 contents (their last references), every upload of bob's of 4
   more (his holding goes while alice keeps hers), and of 20 others each owner's STORED upload
   and 3 of alice's DUPLICATEs (the contents stay referenced).

No content whose last reference goes is uploaded again, so each content is stored exactly once
and the counters are known exactly: live uploads, distinct live contents and their bytes, and
duplicates_avoided = uploads ever held - contents ever stored (a deletion does not undo it).
Clients wait for their uploads by listing those still pending (GET /uploads?status=PENDING,
1,000 a page): polling each of 1,000 uploads would spend the API's one environment on answering
PENDING.

The stack lifts the per-owner cap on uploads waiting for their bytes (MaxPendingUploads, as
`--parameter-overrides` would) to 1,000, so that all of them race at once.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from onecopy_local.resources import Resources, parameter_default
from tests.invariants import check_invariants
from tests.localstack import (
    START_TIMEOUT,
    STOP_TIMEOUT,
    TERMINAL,
    RunningStack,
    object_exists,
    object_keys,
    put_bytes,
    sha256_hex,
    start_stack,
    wait_until,
)

UPLOADS = 1000
CONTENTS = 50
CLIENTS = 32
DELETES = 200
GRACE_S = 3  # the stack's collection grace period
LIST_EVERY_S = 1.0  # how often a client lists its uploads while waiting for them
REQUEST_TIMEOUT_S = 60
# pytest-timeout's limit for this test covers the module fixture's start and stop of the stack
# too. The test's own deadline (against hangs: shared CI machines are slow) is what is left of it
# after those, one request's timeout and the final checks, so a slow run fails with this test's
# message, not pytest-timeout's.
TIMEOUT_S = 1200
MARGIN_S = REQUEST_TIMEOUT_S + 30
BUDGET_S = TIMEOUT_S - START_TIMEOUT - STOP_TIMEOUT - MARGIN_S

pytestmark = [pytest.mark.e2e, pytest.mark.long, pytest.mark.timeout(TIMEOUT_S)]

# Contents by number: the first wave's 0..29 (20 uploads each), the second wave's new 30..49.
FIRST_WAVE = range(30)
NEW_IN_SECOND_WAVE = range(30, 50)
ERASED = range(0, 4)  # every upload deleted (their last references go) before 40 % of the moves
BOB_LETS_GO = range(4, 8)  # bob's uploads deleted (alice keeps hers); bob uploads them anew
THINNED = range(8, 28)  # each owner's STORED upload and 3 of alice's duplicates deleted
UPLOADED_AGAIN = range(8, 18)  # 8 more uploads each in the second wave


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    log_dir: Path = tmp_path_factory.mktemp("concurrency-1000")
    # One API environment: the emulator (one process, one GIL, ~95% of a core throughout) bounds
    # the throughput here, and more API environments made the test slower, not faster: 233 s
    # with 1, 513 and 551 s with 8 (likely cause: the creates run ahead of the workers, and moto
    # scans the deeper queue on every receive). The race stays as wide: 32 clients, 4 workers,
    # every event delivered twice.
    with start_stack(
        log_dir,
        *("--workers", "4", "--duplicate-deliveries", "--api-concurrency", "1"),
        *("--max-pending-uploads", str(UPLOADS)),
        *("--collection-grace", str(GRACE_S), "--collector-schedule", "rate(1 minute)"),
    ) as running:
        yield running


@dataclass(frozen=True)
class Job:
    """One upload the test makes: which content, as whom, under which file name."""

    n: int
    content: int
    user: str


_local = threading.local()


def _session(stack: RunningStack, user: str) -> requests.Session:
    """One keep-alive session per client thread and user (a Session is not meant to be shared),
    signed in."""
    if not hasattr(_local, "sessions"):
        _local.sessions = {}
    sessions: dict[str, requests.Session] = _local.sessions
    if user not in sessions:
        sessions[user] = requests.Session()
        sessions[user].headers.update(stack.auth(user))
    return sessions[user]


def _send(stack: RunningStack, job: Job, data: bytes, deadline: float) -> str:
    """A client's first two moves, as the browser or the CLI makes them: create, then PUT."""
    assert time.monotonic() < deadline, f"upload {job.n} not even created before the deadline"
    created = _session(stack, job.user).post(
        f"{stack.api_url}/uploads",
        json={"filename": f"file-{job.n}.bin", "size": len(data)},
        timeout=REQUEST_TIMEOUT_S,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    put = put_bytes(body["upload"], data)
    assert put.status_code == 200, put.text
    upload_id: str = body["upload_id"]
    return upload_id


def _delete(stack: RunningStack, user: str, upload_id: str) -> None:
    deleted = _session(stack, user).delete(
        f"{stack.api_url}/uploads/{upload_id}", timeout=REQUEST_TIMEOUT_S
    )
    assert deleted.status_code == 204, f"DELETE {upload_id}: {deleted.status_code} {deleted.text}"


def _listing(stack: RunningStack, user: str, **filters: str) -> dict[str, dict[str, Any]]:
    """Every upload ``user`` lists (with ``filters``), by id."""
    items: dict[str, dict[str, Any]] = {}
    token: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **filters}
        if token is not None:
            params["last_evaluated_key"] = token
        page = _session(stack, user).get(
            f"{stack.api_url}/uploads", params=params, timeout=REQUEST_TIMEOUT_S
        )
        assert page.status_code == 200, page.text
        items.update((item["upload_id"], item) for item in page.json()["items"])
        token = page.json()["last_evaluated_key"]
        if token is None:
            return items


def _settled(
    stack: RunningStack, ids: dict[str, Job], deadline: float
) -> dict[str, dict[str, Any]]:
    """The client's last move: list the uploads still PENDING until none of ``ids`` is; then
    the uploads as the owners' lists show them."""
    while True:
        pending = {
            **_listing(stack, "alice", status="PENDING"),
            **_listing(stack, "bob", status="PENDING"),
        }
        waiting = [i for i in ids if i in pending]
        if not waiting:
            break
        assert time.monotonic() < deadline, f"{len(waiting)} uploads still PENDING"
        time.sleep(LIST_EVERY_S)
    listed = {**_listing(stack, "alice"), **_listing(stack, "bob")}
    views = {i: listed[i] for i in ids}
    assert {view["status"] for view in views.values()} <= TERMINAL
    return views


def _download(stack: RunningStack, user: str, upload_id: str) -> bytes:
    """GET /download/{id}, then GET the presigned URL it answers with."""
    found = _session(stack, user).get(
        f"{stack.api_url}/download/{upload_id}", timeout=REQUEST_TIMEOUT_S
    )
    assert found.status_code == 200, f"download {upload_id}: {found.status_code} {found.text}"
    got = requests.get(found.json()["url"], timeout=REQUEST_TIMEOUT_S)
    assert got.status_code == 200, got.text
    return got.content


def _gone(stack: RunningStack, user: str, upload_id: str) -> list[int]:
    """What GET /uploads/{id} and GET /download/{id} answer for a deleted upload."""
    session = _session(stack, user)
    return [
        session.get(f"{stack.api_url}{path}{upload_id}", timeout=REQUEST_TIMEOUT_S).status_code
        for path in ("/uploads/", "/download/")
    ]


def _queue_drained(stack: RunningStack) -> bool:
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(int(value) == 0 for value in attributes.values())


def _queue_arn(queue_url: str) -> str:
    account, name = queue_url.rstrip("/").split("/")[-2:]
    return f"arn:aws:sqs:us-east-1:{account}:{name}"


def _resources(stack: RunningStack) -> Resources:
    """What the invariants read (the bucket and the tables), from the stack's banner."""
    return Resources(
        region="us-east-1",
        bucket=stack.bucket,
        uploads_table=stack.uploads_table,
        contents_table=stack.contents_table,
        stats_table=stack.stats_table,
        holdings_table=stack.holdings_table,
        user_pool_id=stack.user_pool_id,
        user_pool_client_id=stack.client_id,
        stats_shards=int(parameter_default("StatsShards")),
        queue_url=stack.queue_url,
        dlq_url=stack.dlq_url,
        queue_arn=_queue_arn(stack.queue_url),
        dlq_arn=_queue_arn(stack.dlq_url),
        page_token_secret_arn="",  # the banner does not name it, and the invariants never read it
    )


def test_1000_uploads_200_deletes_and_the_collector_racing_them_keep_the_books_exact(
    stack: RunningStack,
) -> None:
    # Given 50 distinct small contents of distinct sizes; the first wave: 20 uploads of each of
    # 30 of them, a quarter of each content's uploads bob's
    contents = [hashlib.sha256(b"%d" % n).digest() * (64 + 8 * n) for n in range(CONTENTS)]
    digest = [sha256_hex(data) for data in contents]
    owners = ["bob" if k % 4 == 3 else "alice" for k in range(20)]
    first = [(c, owners[k]) for c in FIRST_WAVE for k in range(20)]
    # ... and the second: bob's anew of the contents he lets go, more of some thinned ones, and
    # 15 each of the new contents
    second = [(c, "bob") for c in BOB_LETS_GO for _ in range(5)]
    second += [(c, owners[k]) for c in UPLOADED_AGAIN for k in range(8)]
    second += [(c, owners[k]) for c in NEW_IN_SECOND_WAVE for k in range(15)]
    jobs = [Job(n, c, user) for n, (c, user) in enumerate(first + second)]
    assert len(jobs) == UPLOADS and len(first) == 600
    ids: dict[str, Job] = {}

    started = time.monotonic()
    deadline = started + BUDGET_S
    assert BUDGET_S >= 300, "the timeout leaves the test too little time"
    with ThreadPoolExecutor(CLIENTS) as pool:
        # When 32 client threads push the first wave through the API and S3, then list their
        # uploads until every one is terminal
        sent = pool.map(lambda job: _send(stack, job, contents[job.content], deadline), jobs[:600])
        ids.update(zip(sent, jobs[:600], strict=True))
        print(f"\nfirst wave of 600 sent in {time.monotonic() - started:.1f} s")
        waves = [_settled(stack, ids, deadline)]
        print(f"first wave of 600 settled in {time.monotonic() - started:.1f} s")

        # Then each owner got each content STORED exactly once, and the rest as DUPLICATEs
        first_views = waves[0]
        held_first = Counter(
            (ids[i].content, ids[i].user) for i, v in first_views.items() if v["status"] == "STORED"
        )
        assert held_first == dict.fromkeys(
            ((c, u) for c in FIRST_WAVE for u in ("alice", "bob")), 1
        )
        assert Counter(v["status"] for v in first_views.values()) == {
            "STORED": 60,
            "DUPLICATE": 540,
        }

        # When the second wave goes while 200 of the first wave's uploads are deleted
        deletions = _choose_deletions(first_views, ids)
        tasks = _interleave(stack, jobs[600:], contents, deletions, ids, deadline)
        progress = _Progress(len(tasks))
        # ... and the collector is invoked twice meanwhile: once a quarter of the moves are made
        # (the first two contents are unreferenced by then), and once 60 % are and the grace
        # period has passed since the last of the four contents went
        midway: list[dict[str, Any]] = []
        erased = deletions.front + deletions.midway
        with ThreadPoolExecutor(2) as collector:
            collecting = [
                collector.submit(_collect_when, stack, progress, 0.25, None, midway),
                collector.submit(_collect_when, stack, progress, 0.6, (deletions, erased), midway),
            ]
            list(pool.map(progress.run, tasks))
            for run in collecting:
                run.result()
        sent_at = time.monotonic()
        second_ids = {i: j for i, j in ids.items() if j.n >= 600}
        waves.append(_settled(stack, second_ids, deadline))
        wait_until(
            lambda: _queue_drained(stack),
            timeout=max(0.0, deadline - time.monotonic()),
            what="the ingest queue to drain",
        )
        elapsed = time.monotonic() - started
        print(
            f"second wave and {DELETES} deletions sent in {sent_at - started:.1f} s, settled and "
            f"the queue drained in {elapsed:.1f} s; collector runs in flight: {midway}"
        )

        # Then each collector run came while uploads and deletions were in flight, and once the
        # later one (or a scheduled one) had run, the four contents let go were gone, whose last
        # deletion it came a grace period after
        assert [run["moves_done"] < len(tasks) for run in midway] == [True, True], midway
        assert all(run["report"]["complete"] for run in midway)
        late = max(midway, key=lambda run: run["at_fraction"])
        assert late["gone"] == {digest[c]: True for c in ERASED}, late

        # ... the second wave's statuses: one STORED per owner of each new content; only
        # DUPLICATEs of contents the owner still held; at most one STORED of bob's per content
        # he let go (his holding may have gone before, or after, his new upload completed)
        views = {**waves[0], **waves[1]}
        second_views = waves[1]
        new_stored = Counter(
            (ids[i].content, ids[i].user)
            for i, v in second_views.items()
            if v["status"] == "STORED"
        )
        for c in NEW_IN_SECOND_WAVE:
            assert (new_stored[(c, "alice")], new_stored[(c, "bob")]) == (1, 1), c
        for c in UPLOADED_AGAIN:
            assert (new_stored[(c, "alice")], new_stored[(c, "bob")]) == (0, 0), c
        for c in BOB_LETS_GO:
            assert new_stored[(c, "bob")] <= 1, c
        assert {v["status"] for v in second_views.values()} <= {"STORED", "DUPLICATE"}
        assert [views[i]["sha256"] for i in ids] == [digest[ids[i].content] for i in ids]

        # ... every upload was listed by its owner, and after the deletions each owner lists
        # exactly their surviving uploads
        deleted = set(deletions.all)
        survivors = {i: j for i, j in ids.items() if i not in deleted}
        assert len(survivors) == UPLOADS - DELETES
        for user in ("alice", "bob"):
            listed = _listing(stack, user)
            assert set(listed) == {i for i, j in survivors.items() if j.user == user}, user

        # ... every survivor downloads to bytes that hash to its content's SHA-256, and every
        # deleted upload answers 404, its download too
        downloads = pool.map(lambda i: sha256_hex(_download(stack, ids[i].user, i)), survivors)
        assert list(downloads) == [digest[j.content] for j in survivors.values()]
        answers = pool.map(lambda i: _gone(stack, ids[i].user, i), deleted)
        assert Counter(tuple(a) for a in answers) == {(404, 404): DELETES}
        print(f"downloads and 404s checked at {time.monotonic() - started:.1f} s")

    # ... every event really was delivered a second time
    log = stack.log()
    assert log.count("worker: duplicate delivery of staging/") >= UPLOADS
    for upload_id in ids:
        assert f"duplicate delivery of staging/{upload_id} " in log

    # When the grace period has passed since the last deletion and the collector runs once more
    time.sleep(max(0.0, max(deletions.answered.values()) + GRACE_S + 1.0 - time.monotonic()))
    final = stack.invoke("CollectorFunction")
    print(f"collector after the grace: {final}")

    # Then the bucket holds exactly the contents live uploads reference, each under the hash of
    # its bytes, and nothing staged: no object is left unreferenced past the grace
    live = sorted({j.content for j in survivors.values()})
    assert live == [c for c in range(CONTENTS) if c not in ERASED]
    assert object_keys(stack, "cas/") == {f"cas/sha256/{digest[c]}" for c in live}
    s3 = stack.client("s3")
    for c in live:
        body = s3.get_object(Bucket=stack.bucket, Key=f"cas/sha256/{digest[c]}")["Body"].read()
        assert sha256_hex(body) == digest[c]
    assert object_keys(stack, "staging/") == set()

    # ... the counters the API reports to an admin are the facts: live uploads, distinct live
    # contents and their bytes, and every upload ever held but the 50 that stored a content
    stored_bytes = sum(len(contents[c]) for c in live)
    live_bytes = sum(len(contents[j.content]) for j in survivors.values())
    stats = requests.get(f"{stack.api_url}/admin/stats", headers=stack.auth("admin"), timeout=30)
    assert stats.status_code == 200, stats.text
    assert stats.json() == {
        "total_files": len(live),
        "total_uploads": UPLOADS - DELETES,
        "duplicates_avoided": UPLOADS - CONTENTS,
        "total_s3_size_saved": live_bytes - stored_bytes,
        "total_bytes_stored": stored_bytes,
    }

    # ... ReconcileFunction's recount finds the same facts and no drift
    report = stack.invoke("ReconcileFunction", {"repair": False})
    assert report["clean"] is True, report
    assert (
        report["facts"]
        == report["counters"]
        == {
            "files": len(live),
            "uploads": UPLOADS - DELETES,
            "duplicates": UPLOADS - CONTENTS,
            "bytes_saved": live_bytes - stored_bytes,
            "bytes_stored": stored_bytes,
        }
    )

    # ... every invariant holds and no message was dead-lettered
    check_invariants(_resources(stack), s3, stack.client("dynamodb"), settled=list(ids))
    dead = stack.client("sqs").receive_message(QueueUrl=stack.dlq_url, WaitTimeSeconds=0)
    assert dead.get("Messages", []) == []


# --- the second wave's moves ----------------------------------------------------------------------


@dataclass
class Deletions:
    """The first-wave uploads to delete, by where they go among the second wave's moves."""

    front: list[str]  # first: every upload of two contents
    with_bob_anew: list[str]  # bob's uploads of the contents he uploads anew
    with_more: list[str]  # uploads of the contents uploaded again
    midway: list[str]  # every upload of two more contents
    others: list[str]
    answered: dict[str, float] = field(default_factory=dict)  # id -> when (monotonic)

    @property
    def all(self) -> list[str]:
        return self.front + self.with_bob_anew + self.with_more + self.midway + self.others


def _choose_deletions(views: dict[str, dict[str, Any]], ids: dict[str, Job]) -> Deletions:
    by_content: dict[int, list[str]] = {c: [] for c in FIRST_WAVE}
    for upload_id, job in sorted(ids.items(), key=lambda item: item[1].n):
        by_content[job.content].append(upload_id)

    def thin(c: int) -> list[str]:
        """Each owner's STORED upload of content c, and 3 of alice's duplicates."""
        mine = by_content[c]
        stored = [i for i in mine if views[i]["status"] == "STORED"]
        duplicates = [
            i for i in mine if views[i]["status"] == "DUPLICATE" and ids[i].user == "alice"
        ]
        return stored + duplicates[:3]

    front = [i for c in ERASED[:2] for i in by_content[c]]
    midway = [i for c in ERASED[2:] for i in by_content[c]]
    bobs = [i for c in BOB_LETS_GO for i in by_content[c] if ids[i].user == "bob"]
    more = [i for c in UPLOADED_AGAIN for i in thin(c)]
    others = [i for c in THINNED if c not in UPLOADED_AGAIN for i in thin(c)]
    deletions = Deletions(front, bobs, more, midway, others)
    assert len(deletions.all) == len(set(deletions.all)) == DELETES
    return deletions


def _interleave(
    stack: RunningStack,
    second: list[Job],
    contents: list[bytes],
    deletions: Deletions,
    ids: dict[str, Job],
    deadline: float,
) -> list[Callable[[], None]]:
    """The second wave's moves in the order the clients start them: the front deletions, then
    bob's new uploads among the deletions of his old ones, the uploads of contents being thinned
    among those deletions (both shuffled), the midway deletions, and the new contents' uploads
    with the other deletions spread among them."""
    lock = threading.Lock()

    def send(job: Job) -> Callable[[], None]:
        def move() -> None:
            upload_id = _send(stack, job, contents[job.content], deadline)
            with lock:
                ids[upload_id] = job

        return move

    def delete(upload_id: str) -> Callable[[], None]:
        def move() -> None:
            _delete(stack, ids[upload_id].user, upload_id)
            with lock:
                deletions.answered[upload_id] = time.monotonic()

        return move

    rng = random.Random(1000)

    def mix(uploads: list[Job], deleting: list[str]) -> list[Callable[[], None]]:
        moves = [send(job) for job in uploads] + [delete(i) for i in deleting]
        rng.shuffle(moves)
        return moves

    bobs_anew = [job for job in second if job.content in BOB_LETS_GO]
    more = [job for job in second if job.content in UPLOADED_AGAIN]
    new = [job for job in second if job.content in NEW_IN_SECOND_WAVE]
    assert len(bobs_anew) + len(more) + len(new) == len(second)
    return [
        *(delete(i) for i in deletions.front),
        *mix(bobs_anew, deletions.with_bob_anew),
        *mix(more, deletions.with_more),
        *(delete(i) for i in deletions.midway),
        # The new contents' uploads stay grouped by content, so each meets its 15 racing peers.
        *_spread(new, deletions.others, send, delete),
    ]


def _spread(
    uploads: list[Job],
    deleting: list[str],
    send: Callable[[Job], Callable[[], None]],
    delete: Callable[[str], Callable[[], None]],
) -> list[Callable[[], None]]:
    """The uploads in their order, with the deletions spread evenly between them."""
    moves: list[Callable[[], None]] = []
    every = len(uploads) / max(1, len(deleting))
    pending = list(deleting)
    for n, job in enumerate(uploads):
        moves.append(send(job))
        while pending and n + 1 >= every * (len(deleting) - len(pending) + 1):
            moves.append(delete(pending.pop(0)))
    moves += [delete(i) for i in pending]
    return moves


class _Progress:
    """How many of the second wave's moves are done."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._done = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def run(self, move: Callable[[], None]) -> None:
        move()
        with self._changed:
            self._done += 1
            self._changed.notify_all()

    @property
    def done(self) -> int:
        with self._lock:
            return self._done

    def wait_for(self, fraction: float, timeout: float) -> None:
        with self._changed:
            reached = self._changed.wait_for(
                lambda: self._done >= fraction * self.total, timeout=timeout
            )
        assert reached, f"the moves never reached {fraction:.0%}"


def _collect_when(
    stack: RunningStack,
    progress: _Progress,
    fraction: float,
    past_grace_of: tuple[Deletions, list[str]] | None,
    runs: list[dict[str, Any]],
) -> None:
    """Invoke the collector once ``fraction`` of the moves are done (and, if given, once the
    grace period has passed since those deletions were answered); record its report, how far
    the moves were, and whether the objects of the contents let go were gone right after it."""
    progress.wait_for(fraction, timeout=BUDGET_S)
    if past_grace_of is not None:
        deletions, awaited = past_grace_of
        wait_until(
            lambda: all(i in deletions.answered for i in awaited),
            timeout=BUDGET_S,
            what="the deletions the collector is to come after",
        )
        last = max(deletions.answered[i] for i in awaited)
        time.sleep(max(0.0, last + GRACE_S + 1.0 - time.monotonic()))
    moves_done = progress.done
    report = stack.invoke("CollectorFunction")
    contents = [hashlib.sha256(b"%d" % n).digest() * (64 + 8 * n) for n in ERASED]
    gone = {
        sha256_hex(data): not object_exists(stack, f"cas/sha256/{sha256_hex(data)}")
        for data in contents
    }
    runs.append({"at_fraction": fraction, "moves_done": moves_done, "report": report, "gone": gone})
