"""The input policy of the cc launcher: which files an ExecReq embeds, uploads or names.

Every input goes into the ExecReq by hash key.  The goma client also attaches the
content of some files, and this module makes the same choices:

* a file the server reported missing is embedded, or, above 2 MiB, its FILE_CHUNKs
  are stored with ``/s`` first and its FILE_META is embedded;
* a file under 512 bytes is always embedded;
* a new file (modified less than 300 s ago) whose hash key is not known to be on the
  server is embedded.  Above 2 MiB only its FILE_META is embedded and its chunks are
  not uploaded, so the server reports it missing and the next round uploads them;
* every other file is sent by hash key only.

Then the embedded FILE contents are cut to about 1 MiB per request.  The inputs are
shuffled, content is kept while the running total is below 1 MiB, and the rest are
sent by key only.  The server then reports those missing and the next round embeds
them.  Finally the inputs are sorted by filename.

The known-key cache is a sqlite database in the client state directory.  It maps an
absolute path, mtime and size to the file's hash key and to whether the server is known
to store that key.  When more than half of a request's inputs come back missing, every
file counts as new until an Exec completes with nothing missing.
"""

from __future__ import annotations

import enum
import os
import random
import sqlite3
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gomaproxy.goma.blob import LARGE_FILE_THRESHOLD, blob_for_content, hash_key
from gomaproxy.protos import goma_data_pb2 as goma_pb2

TINY_FILE_THRESHOLD = 512
NEW_FILE_THRESHOLD_SECONDS = 300.0
MAX_EMBEDDED_BYTES = 1024 * 1024
CHUNKS_PER_STORE_REQUEST = 5

KNOWN_FILES_DATABASE = "known_files.sqlite3"

# Seconds a connection waits for another launcher's write lock before failing.
_SQLITE_BUSY_TIMEOUT = 30.0

_SEND_ALL_CONTENT = "send_all_content"


class InputAction(enum.Enum):
    """The way one input file travels in the next ExecReq."""

    HASH_ONLY = "hash_only"
    EMBED = "embed"
    # A new large file: its FILE_META is embedded but its chunks are not uploaded.
    EMBED_META_WITHOUT_CHUNKS = "embed_meta_without_chunks"
    # A missing large file: its chunks are stored with /s and its FILE_META embedded.
    UPLOAD_CHUNKS = "upload_chunks"


def choose_action(
    *, size: int, is_new: bool, key_on_server: bool, reported_missing: bool
) -> InputAction:
    """Return how a file travels, by the goma client's rules.

    Args:
        size: the file size in bytes.
        is_new: the file changed recently, or every file counts as new at the moment.
        key_on_server: the file's hash key is known to be stored on the server.
        reported_missing: the server listed the file in ``missing_input`` last round.
    """
    large = size > LARGE_FILE_THRESHOLD

    if reported_missing:
        return InputAction.UPLOAD_CHUNKS if large else InputAction.EMBED
    if size < TINY_FILE_THRESHOLD:
        return InputAction.EMBED
    if is_new and not key_on_server:
        return InputAction.EMBED_META_WITHOUT_CHUNKS if large else InputAction.EMBED
    return InputAction.HASH_ONLY


def is_new_file(mtime_ns: int, now: float) -> bool:
    """Tell whether a file modified at ``mtime_ns`` counts as new at time ``now``."""
    return now - mtime_ns / 1e9 < NEW_FILE_THRESHOLD_SECONDS


def is_mostly_missing(missing_count: int, input_count: int) -> bool:
    """Tell whether more than half of a request's inputs were reported missing."""
    return missing_count * 2 > input_count


# ---------------------------------------------------------------------------------------
# The known-key cache.


@dataclass(frozen=True)
class FileIdentity:
    """One version of a local file: its absolute path, mtime and size."""

    path: str
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, path: str) -> FileIdentity:
        stat = os.stat(path)
        return cls(path=path, mtime_ns=stat.st_mtime_ns, size=stat.st_size)


@dataclass(frozen=True)
class KnownFile:
    """A cached hash key and whether the server is known to store it."""

    hash_key: str
    on_server: bool


class KnownFileStore:
    """The persistent map from file versions to hash keys, shared by launcher runs.

    Several launchers may use one database at a time: sqlite serializes their writes,
    and a writer waits up to 30 s for the lock.  The connection may move between
    threads but must not be used by two threads at once.
    """

    def __init__(self, database: str | Path) -> None:
        self._db = sqlite3.connect(
            str(database),
            timeout=_SQLITE_BUSY_TIMEOUT,
            isolation_level=None,
            check_same_thread=False,
        )
        self._enable_write_ahead_log()
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS files ("
            " path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL,"
            " hash_key TEXT NOT NULL, on_server INTEGER NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS files_by_key ON files (hash_key)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
        )

    def _enable_write_ahead_log(self) -> None:
        # Switching the journal mode needs an exclusive lock and does not wait on the
        # busy timeout, so two launchers creating the database at once retry here.
        deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @classmethod
    def open_in(cls, state_dir: Path) -> KnownFileStore:
        """Open or create the store in ``state_dir``, creating the directory too."""
        state_dir.mkdir(parents=True, exist_ok=True)
        return cls(state_dir / KNOWN_FILES_DATABASE)

    def close(self) -> None:
        self._db.close()

    def lookup(self, identity: FileIdentity) -> KnownFile | None:
        """Return the cached key of this exact file version, or None."""
        row = self._db.execute(
            "SELECT hash_key, on_server FROM files WHERE path = ? AND mtime_ns = ? AND size = ?",
            (identity.path, identity.mtime_ns, identity.size),
        ).fetchone()
        if row is None:
            return None
        return KnownFile(hash_key=row[0], on_server=bool(row[1]))

    def is_key_on_server(self, key: str) -> bool:
        """Tell whether any file with hash key ``key`` is known to be on the server."""
        row = self._db.execute(
            "SELECT 1 FROM files WHERE hash_key = ? AND on_server = 1 LIMIT 1", (key,)
        ).fetchone()
        return row is not None

    def record(self, identity: FileIdentity, key: str) -> None:
        """Store the key of a file version, keeping ``on_server`` only if the key is unchanged."""
        self._db.execute(
            "INSERT INTO files (path, mtime_ns, size, hash_key, on_server)"
            " VALUES (?, ?, ?, ?, 0)"
            " ON CONFLICT (path) DO UPDATE SET"
            "  mtime_ns = excluded.mtime_ns, size = excluded.size,"
            "  on_server = CASE WHEN hash_key = excluded.hash_key THEN on_server ELSE 0 END,"
            "  hash_key = excluded.hash_key",
            (identity.path, identity.mtime_ns, identity.size, key),
        )

    def mark_on_server(self, files: Iterable[tuple[FileIdentity, str]]) -> None:
        """Record that the server stores each (file version, key) pair."""
        rows = [(ident.path, ident.mtime_ns, ident.size, key) for ident, key in files]
        self._db.executemany(
            "INSERT INTO files (path, mtime_ns, size, hash_key, on_server)"
            " VALUES (?, ?, ?, ?, 1)"
            " ON CONFLICT (path) DO UPDATE SET"
            "  mtime_ns = excluded.mtime_ns, size = excluded.size,"
            "  hash_key = excluded.hash_key, on_server = 1",
            rows,
        )

    def mark_keys_missing(self, keys: Iterable[str]) -> None:
        """Record that the server lacks these keys, for every path that has them."""
        self._db.executemany(
            "UPDATE files SET on_server = 0 WHERE hash_key = ?", [(key,) for key in keys]
        )

    @property
    def send_all_content(self) -> bool:
        """True while every file counts as new because the server lacked most inputs."""
        row = self._db.execute(
            "SELECT value FROM settings WHERE name = ?", (_SEND_ALL_CONTENT,)
        ).fetchone()
        return bool(row and row[0])

    @send_all_content.setter
    def send_all_content(self, value: bool) -> None:
        self._db.execute(
            "INSERT INTO settings (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (_SEND_ALL_CONTENT, int(value)),
        )


# ---------------------------------------------------------------------------------------
# Planning one round.


@dataclass(frozen=True)
class PlannedInput:
    """One input of the next ExecReq and what travels with it.

    ``blob`` is the FILE or FILE_META to embed, None for a key-only input.  ``chunks``
    are the FILE_CHUNKs to store with ``/s`` before the Exec, empty unless ``action``
    is UPLOAD_CHUNKS.
    """

    filename: str
    identity: FileIdentity
    hash_key: str
    action: InputAction
    blob: goma_pb2.FileBlob | None
    chunks: tuple[goma_pb2.FileBlob, ...]


def plan_inputs(
    filenames: Sequence[str],
    *,
    cwd: str,
    store: KnownFileStore,
    missing: Collection[str],
    now: float,
) -> list[PlannedInput]:
    """Decide how each input travels in the next ExecReq, reading files as needed.

    Args:
        filenames: input paths as the compiler printed them, relative to ``cwd`` or
            absolute.
        cwd: the compile's working directory.
        store: the known-key cache.  Keys computed here are recorded in it.
        missing: filenames the server reported missing in the previous round.
        now: the current time in seconds since the epoch, for the new-file rule.

    Raises:
        OSError: if an input cannot be read.
    """
    send_all = store.send_all_content
    return [
        _plan_one(filename, cwd, store, filename in missing, send_all, now)
        for filename in filenames
    ]


def _plan_one(
    filename: str,
    cwd: str,
    store: KnownFileStore,
    reported_missing: bool,
    send_all: bool,
    now: float,
) -> PlannedInput:
    identity = FileIdentity.of(os.path.join(cwd, filename))
    known = store.lookup(identity)

    content: bytes | None = None
    if known is None:
        content = _read(identity.path)
        key = hash_key(blob_for_content(content)[0])
        store.record(identity, key)
    else:
        key = known.hash_key

    action = choose_action(
        size=identity.size,
        is_new=send_all or is_new_file(identity.mtime_ns, now),
        key_on_server=store.is_key_on_server(key),
        reported_missing=reported_missing,
    )
    if action is InputAction.HASH_ONLY:
        return PlannedInput(filename, identity, key, action, blob=None, chunks=())

    if content is None:
        content = _read(identity.path)
    blob, chunks = blob_for_content(content)
    key = hash_key(blob)
    if action is not InputAction.UPLOAD_CHUNKS:
        chunks = ()
    return PlannedInput(filename, identity, key, action, blob=blob, chunks=chunks)


def _read(path: str) -> bytes:
    with open(path, "rb") as stream:
        return stream.read()


def chunk_batches(
    chunks: Sequence[goma_pb2.FileBlob], batch_size: int = CHUNKS_PER_STORE_REQUEST
) -> list[list[goma_pb2.FileBlob]]:
    """Split chunks into ``/s`` requests of at most ``batch_size`` blobs, in order."""
    return [list(chunks[start : start + batch_size]) for start in range(0, len(chunks), batch_size)]


# ---------------------------------------------------------------------------------------
# Building the ExecReq inputs.


def exec_inputs(
    planned: Sequence[PlannedInput],
    *,
    rng: random.Random,
    max_embedded_bytes: int = MAX_EMBEDDED_BYTES,
) -> list[goma_pb2.ExecReq.Input]:
    """Return the ExecReq inputs for ``planned``, embedded content capped, sorted by name."""
    inputs = []
    for item in planned:
        entry = goma_pb2.ExecReq.Input(filename=item.filename, hash_key=item.hash_key)
        if item.blob is not None:
            entry.content.CopyFrom(item.blob)
        inputs.append(entry)
    return shrink_embedded(inputs, rng=rng, max_embedded_bytes=max_embedded_bytes)


def shrink_embedded(
    inputs: Sequence[goma_pb2.ExecReq.Input],
    *,
    rng: random.Random,
    max_embedded_bytes: int = MAX_EMBEDDED_BYTES,
) -> list[goma_pb2.ExecReq.Input]:
    """Cap embedded FILE contents near ``max_embedded_bytes`` and sort by filename.

    The inputs are visited in random order.  A FILE keeps its content while the total
    kept so far is below the cap, so the total can pass the cap by at most one file.
    The others keep only their hash key.  Embedded FILE_META blobs carry no content
    and are always kept, because the chunks they name may have been uploaded for them.
    """
    shuffled = list(inputs)
    rng.shuffle(shuffled)
    total = 0

    for entry in shuffled:
        if not _embeds_file_content(entry):
            continue
        if total >= max_embedded_bytes:
            entry.ClearField("content")
            continue
        total += len(entry.content.content)

    return sorted(shuffled, key=lambda entry: entry.filename)


def embedded_bytes(inputs: Iterable[goma_pb2.ExecReq.Input]) -> int:
    """Return the bytes of FILE content embedded in ``inputs``."""
    return sum(len(entry.content.content) for entry in inputs if _embeds_file_content(entry))


def _embeds_file_content(entry: goma_pb2.ExecReq.Input) -> bool:
    return entry.HasField("content") and entry.content.blob_type == goma_pb2.FileBlob.FILE


# ---------------------------------------------------------------------------------------
# Learning from Exec responses.


def record_missing(
    store: KnownFileStore, planned: Sequence[PlannedInput], missing: Collection[str]
) -> None:
    """Record that the server lacks the missing inputs' keys.

    When more than half of the inputs were missing, every file counts as new from now on.
    """
    keys = [item.hash_key for item in planned if item.filename in missing]
    store.mark_keys_missing(keys)
    if is_mostly_missing(len(missing), len(planned)):
        store.send_all_content = True


def record_received(
    store: KnownFileStore,
    planned: Sequence[PlannedInput],
    embedded: Collection[str],
    missing: Collection[str],
) -> None:
    """Record that the server stores the inputs it received with content last round.

    gomaproxy writes every embedded blob to its file store before it responds, so a file
    that was embedded and not reported missing need not be embedded again.  Without
    this, new files would be embedded in every missing-input round and crowd the files
    the server lacks out of the 1 MiB budget.
    """
    received = [
        item for item in planned if item.filename in embedded and item.filename not in missing
    ]
    store.mark_on_server((item.identity, item.hash_key) for item in received)


def record_success(store: KnownFileStore, inputs: Iterable[PlannedInput]) -> None:
    """Record that the server stores every input of an Exec that had nothing missing."""
    store.mark_on_server((item.identity, item.hash_key) for item in inputs)
    store.send_all_content = False
