"""Eviction from the local CAS, which removes least recently used blobs that no PinSet holds."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gomaproxy.digest import DigestKey

if TYPE_CHECKING:
    from gomaproxy.local.cas import ContentAddressableStorage


def plan_eviction(
    sizes_in_lru_order: Iterable[tuple[DigestKey, int]],
    total_bytes: int,
    max_bytes: int,
    pinned: Callable[[DigestKey], bool],
) -> list[DigestKey]:
    """Pick the least recently used unpinned blobs to remove until the total fits ``max_bytes``.

    Returns fewer blobs than needed when the rest are pinned.  The store then stays over
    its cap until the pins are released and the next write evicts again.
    """
    victims: list[DigestKey] = []
    for key, size in sizes_in_lru_order:
        if total_bytes <= max_bytes:
            break
        if pinned(key):
            continue
        victims.append(key)
        total_bytes -= size
    return victims


@dataclass
class PinSet:
    """Digests pinned by one owner and released together when its ``pinned()`` block ends."""

    _store: ContentAddressableStorage
    keys: set[DigestKey] = field(default_factory=set)

    def add(self, key: DigestKey) -> None:
        """Pin ``key`` until the block ends; adding a key twice pins it once."""
        if key in self.keys:
            return
        self.keys.add(key)
        self._store.pin(key)

    def update(self, keys: Iterable[DigestKey]) -> None:
        for key in keys:
            self.add(key)
