"""De-duplication: which of the rows that share an identifier is sent.

The policy depends on what the input means:

- **first-wins** (push, ``Seen``): a change file streams, so the first row with an id is sent and
  the later ones are rejected as duplicates; nothing waits for the end of the file.
- **all-rejected** (sync): in a snapshot no row of a repeated id can be trusted to be the current
  one, so all of them are rejected. That is a query over the staged snapshot, in the diff's SQL
  (``diff.py``), not a structure here.
- **latest-wins** (the relay, to come): events of one profile over time, where the newest is the
  truth; it comes with the relay.
"""

from __future__ import annotations

import hashlib
import sqlite3
from array import array

_sha256 = hashlib.sha256


class Seen:
    """Identifiers already taken in this run, with the line that first had each one.

    First occurrence wins: it is the one sent, later ones are counted as duplicates. (Keeping
    the first lets the file stream: nothing waits for the end of the file.)

    Memory matters here: this is the only structure that grows with the input. Instead of a dict
    of id strings (~180 bytes an entry) it is an open-addressing table of 8-byte keys (the first
    64 bits of the SHA-256 of the id) and 4-byte line numbers in two flat arrays: 12 bytes a
    slot, at most 2/3 full, and never more than ``max_slots`` (24 MiB by default, about 1.4
    million ids). Ids beyond that go to a scratch SQLite table on disk, so memory stays flat
    however long the file is (those lookups are slower). Two different ids share a key with a
    chance of about n^2 / 2^65 (1 in 7 million for a million ids); such a pair would be reported
    as a duplicate, never sent twice.
    """

    def __init__(self, expected: int = 1 << 16, max_slots: int = 1 << 21, hex_ids: bool = False) -> None:
        self._hex = hex_ids  # ids are SHA-256 hex digests (hashed_email): their first 16 digits are the key
        size = min(1 << max(12, (expected * 3 // 2).bit_length()), max_slots)
        self._max_slots = max(size, max_slots)
        self._keys = array("Q", bytes(8 * size))
        self._lines = array("l" if array("l").itemsize == 4 else "i", bytes(4 * size))
        self._mask = size - 1
        self._count = 0
        self._disk: sqlite3.Connection | None = None

    def key(self, customer_id: str) -> int:
        """64 bits of the id's SHA-256, never 0 (0 marks an empty slot)."""
        if self._hex:
            return int(customer_id[:16], 16) or 1
        return int.from_bytes(_sha256(customer_id.encode("utf-8", "surrogatepass")).digest()[:8], "big") or 1

    def first_line(self, customer_id: str, line: int) -> int | None:
        """The earlier line with this id, or None (and remember this one) if it is new."""
        key = (int(customer_id[:16], 16) or 1) if self._hex else self.key(customer_id)
        keys, mask = self._keys, self._mask
        i = key & mask
        k = keys[i]
        while k:
            if k == key:
                return int(self._lines[i])
            i = (i + 1) & mask
            k = keys[i]
        if self._disk is not None:
            return self._on_disk(key, line)
        keys[i] = key
        self._lines[i] = line
        self._count += 1
        if self._count * 3 > mask * 2:
            if (mask + 1) * 2 <= self._max_slots:
                self._grow()
            else:  # the table is as large as it may be: further ids go to disk
                self._disk = sqlite3.connect("", isolation_level=None)
                self._disk.execute("PRAGMA cache_size=-2048")
                self._disk.execute("CREATE TABLE seen (k INTEGER PRIMARY KEY, line INTEGER NOT NULL)")
        return None

    def _on_disk(self, key: int, line: int) -> int | None:
        assert self._disk is not None
        key = key - (1 << 64) if key >= 1 << 63 else key  # SQLite's INTEGER is signed
        got = self._disk.execute("SELECT line FROM seen WHERE k = ?", (key,)).fetchone()
        if got is not None:
            return int(got[0])
        self._disk.execute("INSERT INTO seen VALUES (?, ?)", (key, line))
        return None

    def close(self) -> None:
        if self._disk is not None:
            self._disk.close()
            self._disk = None

    def _grow(self) -> None:
        old_keys, old_lines = self._keys, self._lines
        size = (self._mask + 1) * 2
        self._keys = array("Q", bytes(8 * size))
        self._lines = array(old_lines.typecode, bytes(4 * size))
        self._mask = size - 1
        keys, lines, mask = self._keys, self._lines, self._mask
        for k, line in zip(old_keys, old_lines, strict=True):
            if k:
                i = k & mask
                while keys[i]:
                    i = (i + 1) & mask
                keys[i] = k
                lines[i] = line
