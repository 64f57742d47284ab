"""Case 8: 2 000 requests mixing commit failures, handler errors and cancellations.

A seeded ``random.Random`` plans the mix; 16 workers send it through an in-process
``httpx.ASGITransport`` client (the handler runs in the client's task, so a client-side
timeout cancels the handler mid-query). Every request moves money: ``balance += amount`` on
an account and a ledger row whose ``key`` is unique, checked at COMMIT.

==============  ==================================================  =========================
kind            what happens                                        answer
==============  ==================================================  =========================
ok              writes, commits                                     201
dup_seed        writes a key that already exists: COMMIT fails       409
dup_pair        two requests with one new key, at random moments:   one 201, one 409
                the second COMMIT fails
raise           writes, then a handler bug                          500
refuse          writes, then ``HTTPException(400)``                 400
cancel          writes, then ``pg_sleep(30)``; the client gives up   (cancelled)
                after 0-150 ms (``asyncio.wait_for``)
==============  ==================================================  =========================

The database must end in exactly the state the 2xx answers imply: the same set of ledger
keys, the same amount per account, every balance equal to its ledger sum; and the pool has
nothing checked out, the server no transaction left open.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter, defaultdict
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select

from tests.support.pools import checked_out
from tests.support.waiting import wait_for

from .faultapp import Account, Ledger, build_app, rows
from .helpers import faults_settings, idle_in_transaction, in_process

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SEED = 20_261_125
REQUESTS = 2000
WORKERS = 16
ACCOUNTS = 10
SEED_KEYS = 20  # "seed-0" ... "seed-19" exist before the run (faults_db)
WEIGHTS = {"ok": 45, "dup_seed": 10, "dup_pair": 10, "raise": 10, "refuse": 10, "cancel": 15}
EXPECTED = {
    "ok": {"201"},
    "dup_seed": {"409"},
    "dup_pair": {"201", "409"},
    "raise": {"500"},
    "refuse": {"400"},
    "cancel": {"cancelled"},
}


@dataclass
class Planned:
    kind: str
    key: str
    account: int
    amount: int
    cancel_after: float = 0.0
    outcome: str = ""

    @property
    def path(self) -> str:
        return {
            "raise": "/transfer/raise",
            "refuse": "/transfer/refuse",
            "cancel": "/transfer/slow?seconds=30",
        }.get(self.kind, "/transfer")


def plan(rng: random.Random) -> list[Planned]:
    kinds = list(WEIGHTS)
    weights = list(WEIGHTS.values())
    fresh = (f"k-{n}" for n in itertools.count())
    planned: list[Planned] = []
    while len(planned) < REQUESTS:
        kind = rng.choices(kinds, weights)[0]
        account, amount = rng.randint(1, ACCOUNTS), rng.randint(1, 1000)
        if kind == "dup_seed":
            planned.append(Planned(kind, f"seed-{rng.randrange(SEED_KEYS)}", account, amount))
        elif kind == "dup_pair":
            key = next(fresh)
            planned.append(Planned(kind, key, account, amount))
            planned.append(Planned(kind, key, rng.randint(1, ACCOUNTS), rng.randint(1, 1000)))
        elif kind == "cancel":
            planned.append(Planned(kind, next(fresh), account, amount, rng.uniform(0, 0.15)))
        else:
            planned.append(Planned(kind, next(fresh), account, amount))
    planned = planned[:REQUESTS]
    rng.shuffle(planned)  # the two halves of a pair land anywhere: together or far apart
    return planned


async def test_random_mix_leaves_exactly_what_the_2xx_answers_imply(faults_db: str) -> None:
    settings = faults_settings(faults_db, pool_size=10, max_overflow=20, pool_timeout=10)
    app = build_app(settings)
    planned = plan(random.Random(SEED))
    queue: asyncio.Queue[Planned] = asyncio.Queue()
    for request in planned:
        queue.put_nowait(request)

    async with in_process(app) as client:

        async def send(request: Planned) -> str:
            body = {"key": request.key, "account": request.account, "amount": request.amount}
            call = client.post(request.path, json=body)
            if request.kind != "cancel":
                return str((await call).status_code)
            try:
                answer = await asyncio.wait_for(call, request.cancel_after)
            except TimeoutError:
                return "cancelled"
            return str(answer.status_code)

        async def worker() -> None:
            while not queue.empty():
                request = queue.get_nowait()
                try:
                    request.outcome = await send(request)
                except httpx.HTTPError as exc:
                    request.outcome = type(exc).__name__

        await asyncio.gather(*(worker() for _ in range(WORKERS)))

        async def pool_idle() -> bool:
            return checked_out(app) == 0

        assert await wait_for(pool_idle, 10), checked_out(app)

        async def no_open_transactions() -> bool:
            return not await idle_in_transaction(faults_db)

        assert await wait_for(no_open_transactions, 10), await idle_in_transaction(faults_db)

    outcomes = Counter((r.kind, r.outcome) for r in planned)
    unexpected = {k: n for k, n in outcomes.items() if k[1] not in EXPECTED[k[0]]}
    assert not unexpected, (unexpected, outcomes)
    pairs: dict[str, list[str]] = defaultdict(list)
    for r in planned:
        if r.kind == "dup_pair":
            pairs[r.key].append(r.outcome)
    complete = [sorted(o) for o in pairs.values() if len(o) == 2]
    assert complete and all(o == ["201", "409"] for o in complete), complete

    # The database holds exactly what the 2xx answers said.
    succeeded = [r for r in planned if r.outcome.startswith("2")]
    ledger = await rows(
        settings,
        select(Ledger.key, Ledger.account, Ledger.amount).where(Ledger.key.not_like("seed-%")),
    )
    assert sorted(row.key for row in ledger) == sorted(r.key for r in succeeded)
    expected_per_account: Counter[int] = Counter()
    for r in succeeded:
        expected_per_account[r.account] += r.amount
    ledger_per_account: Counter[int] = Counter()
    for row in ledger:
        ledger_per_account[row.account] += row.amount
    assert ledger_per_account == expected_per_account
    balances = {row.id: row.balance for row in await rows(settings, select(Account))}
    assert balances == {a: expected_per_account[a] for a in range(1, ACCOUNTS + 1)}

    by_outcome = Counter(r.outcome for r in planned)
    print(
        f"\nrandom mix (seed {SEED}): {len(planned)} requests {dict(by_outcome)}; "
        f"{len(succeeded)} committed, sum {sum(r.amount for r in succeeded)}"
    )
