"""Login throttling, the bound on concurrent password checks, and the client's address.

`LoginThrottle.attempt(keys)` counts a login attempt against each key (the account and the
client's address) *before* the password is checked, under one lock: of 200 simultaneous wrong
posts, only the first `free_failures` reach a password check, the rest are refused at once. A
right password resets its keys (`succeeded`). After `free_failures` failures in a row a key is
blocked for `base_delay` seconds, doubling with each further failure up to `max_delay`: a
lockout never lasts longer than that, so the right password gets in after at most `max_delay`
even while someone keeps guessing. A key not tried for `forget_after` seconds starts afresh.

`PasswordChecks` runs the argon2 checks (64 MiB each) in a small thread pool of their own, at
most `workers` at once, never in the default pool ingest uses; more than `max_waiting` waiting
are refused (the login answers 503) instead of queueing without end.

`client_address(peer, forwarded_for, trusted)`: the socket peer, unless the peer is a
configured proxy (`forwarded_allow_ips`), in which case the nearest `X-Forwarded-For` entry
that is not a trusted proxy itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

FREE_FAILURES = {"user": 10, "addr": 30}  # failures in a row before a key (by its prefix) is blocked
BASE_DELAY = 30.0  # seconds the first block lasts; doubles with every failure after it
MAX_DELAY = 15 * 60.0  # the longest block
FORGET_AFTER = 3600.0  # a key untried this long starts again from zero
MAX_KEYS = 100_000  # the least recently tried keys are forgotten beyond this (memory bound)


@dataclass
class _Entry:
    failures: int = 0
    blocked_until: float = 0.0
    last: float = 0.0


class LoginThrottle:
    """Failures per key (e.g. `user:alice`, `addr:10.0.0.7`), counted before the password check.
    `free_failures`: one number for every key, or one per key prefix (the part before `:`)."""

    def __init__(self, free_failures: int | dict[str, int] = FREE_FAILURES, base_delay: float = BASE_DELAY,
                 max_delay: float = MAX_DELAY, forget_after: float = FORGET_AFTER, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free_failures, self.base_delay, self.max_delay = free_failures, base_delay, max_delay
        self.forget_after, self.max_keys, self.clock = forget_after, max_keys, clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def _entry(self, key: str, now: float) -> _Entry:
        entry = self._entries.get(key)
        if entry is None or (now - entry.last > self.forget_after and now >= entry.blocked_until):
            entry = self._entries[key] = _Entry()
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)
        return entry

    def _free(self, key: str) -> int:
        if isinstance(self.free_failures, int):
            return self.free_failures
        return self.free_failures.get(key.split(":", 1)[0], min(self.free_failures.values()))

    def _delay(self, key: str, failures: int) -> float:
        over = failures - self._free(key)  # 0 on the failure that first blocks
        if over < 0:
            return 0.0
        return min(self.max_delay, self.base_delay * 2.0 ** min(over, 64))

    def attempt(self, keys: Iterable[str]) -> float:
        """0.0: go ahead and check the password (the attempt is already counted as a failure);
        else the seconds until these keys may try again (nothing is counted)."""
        keys = list(dict.fromkeys(keys))
        with self._lock:
            now = self.clock()
            entries = [self._entry(k, now) for k in keys]
            wait = max((e.blocked_until - now for e in entries), default=0.0)
            if wait > 0:
                return wait
            for k, e in zip(keys, entries):
                e.failures += 1
                e.last = now
                delay = self._delay(k, e.failures)
                if delay:
                    e.blocked_until = now + delay
            return 0.0

    def succeeded(self, keys: Iterable[str]) -> None:
        """The password was right: these keys start again from zero."""
        with self._lock:
            for k in keys:
                self._entries.pop(k, None)

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may try again (0.0: now)."""
        with self._lock:
            entry = self._entries.get(key)
            return max(0.0, entry.blocked_until - self.clock()) if entry else 0.0

    def failures(self, key: str) -> int:
        with self._lock:
            entry = self._entries.get(key)
            return entry.failures if entry else 0

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()


class Busy(Exception):
    """Too many password checks are waiting already."""


class PasswordChecks:
    """At most `workers` password checks at once, in threads of their own; `max_waiting` queued."""

    def __init__(self, workers: int = 2, max_waiting: int = 32) -> None:
        self.workers, self.max_waiting = workers, max_waiting
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._pending = 0

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="password-check")
            return self._pool

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the pool; Busy when `max_waiting` checks are pending already."""
        pool = self._executor()
        with self._lock:
            if self._pending >= self.max_waiting + self.workers:
                raise Busy
            self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        finally:
            with self._lock:
                self._pending -= 1

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- the client's address

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted(spec: str) -> tuple[bool, tuple[Network, ...]]:
    """`forwarded_allow_ips`: comma-separated addresses or networks (CIDR), or `*` (any peer).
    Returns (any peer, networks); ValueError for an entry that is neither."""
    nets: list[Network] = []
    any_peer = False
    for part in (p.strip() for p in (spec or "").split(",")):
        if not part:
            continue
        if part == "*":
            any_peer = True
            continue
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"forwarded_allow_ips: {part!r} is neither an address, a network nor '*'") from None
    return any_peer, tuple(nets)


def _is_trusted(host: str, trusted: tuple[bool, tuple[Network, ...]]) -> bool:
    any_peer, nets = trusted
    if any_peer:
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(addr in net for net in nets if net.version == addr.version)


def client_address(peer: str | None, forwarded_for: list[str] | None,
                   trusted: tuple[bool, tuple[Network, ...]]) -> str:
    """The client's address: the socket `peer`, or, when the peer is a trusted proxy, the
    right-most `X-Forwarded-For` entry that is not a trusted proxy (the left-most when all are)."""
    peer = peer or "?"
    if not forwarded_for or not _is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    if not hops:
        return peer
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop[:64]
    return hops[0][:64]


def retry_seconds(wait: float) -> int:
    return max(1, math.ceil(wait))
