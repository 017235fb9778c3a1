"""Tests of the launcher's input policy: embed, upload or send by hash key only."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from gomaproxy.client.inputs import (
    MAX_EMBEDDED_BYTES,
    FileIdentity,
    InputAction,
    KnownFileStore,
    choose_action,
    chunk_batches,
    embedded_bytes,
    exec_inputs,
    plan_inputs,
    record_missing,
    record_success,
    shrink_embedded,
)
from gomaproxy.goma.blob import LARGE_FILE_THRESHOLD, blob_for_content, file_blob, hash_key
from gomaproxy.protos import goma_data_pb2 as goma_pb2

MiB = 1024 * 1024
HOUR = 3600.0


@pytest.fixture
def store() -> KnownFileStore:
    return KnownFileStore(":memory:")


def write_file(directory: Path, name: str, size: int, *, age_seconds: float = 0.0) -> Path:
    """Write ``size`` bytes to ``directory/name`` and backdate it by ``age_seconds``."""
    path = directory / name
    path.write_bytes((name.encode() * (size // max(len(name), 1) + 1))[:size])
    stamp = time.time() - age_seconds
    os.utime(path, (stamp, stamp))
    return path


@pytest.mark.parametrize(
    ("size", "is_new", "key_on_server", "missing", "expected"),
    [
        (100, False, True, False, InputAction.EMBED),
        (100, True, True, False, InputAction.EMBED),
        (4096, True, False, False, InputAction.EMBED),
        (4096, True, True, False, InputAction.HASH_ONLY),
        (4096, False, False, False, InputAction.HASH_ONLY),
        (4096, False, True, True, InputAction.EMBED),
        (3 * MiB, False, False, True, InputAction.UPLOAD_CHUNKS),
        (3 * MiB, True, False, False, InputAction.EMBED_META_WITHOUT_CHUNKS),
        (3 * MiB, True, True, False, InputAction.HASH_ONLY),
        (LARGE_FILE_THRESHOLD, False, False, True, InputAction.EMBED),
    ],
    ids=["tiny-old", "tiny-known", "new-unknown", "new-known", "old", "missing",
         "missing-large", "new-large", "new-large-known", "missing-at-threshold"],
)  # fmt: skip
def test_choose_action_rules(
    size: int, is_new: bool, key_on_server: bool, missing: bool, expected: InputAction
) -> None:
    """Each combination of size, age, server knowledge and missing status has one action."""
    action = choose_action(
        size=size, is_new=is_new, key_on_server=key_on_server, reported_missing=missing
    )

    assert action is expected


def test_plan_inputs_embeds_tiny_and_new(tmp_path: Path, store: KnownFileStore) -> None:
    """A tiny old file and a new file are embedded as FILE blobs with matching keys."""
    write_file(tmp_path, "tiny.h", 100, age_seconds=HOUR)
    write_file(tmp_path, "new.c", 4096)

    planned = plan_inputs(
        ["tiny.h", "new.c"], cwd=str(tmp_path), store=store, missing=(), now=time.time()
    )

    by_name = {item.filename: item for item in planned}
    for name in ("tiny.h", "new.c"):
        content = (tmp_path / name).read_bytes()
        assert by_name[name].action is InputAction.EMBED
        assert by_name[name].blob == file_blob(content)
        assert by_name[name].hash_key == hash_key(file_blob(content))
        assert by_name[name].chunks == ()


def test_plan_inputs_old_file_hash_only(tmp_path: Path, store: KnownFileStore) -> None:
    """An old file goes by hash key only, and its key is cached for the next round."""
    path = write_file(tmp_path, "old.h", 4096, age_seconds=HOUR)

    planned = plan_inputs(["old.h"], cwd=str(tmp_path), store=store, missing=(), now=time.time())

    expected_key = hash_key(file_blob(path.read_bytes()))
    assert planned[0].action is InputAction.HASH_ONLY
    assert planned[0].blob is None
    assert planned[0].hash_key == expected_key
    known = store.lookup(FileIdentity.of(str(path)))
    assert known is not None
    assert known.hash_key == expected_key
    assert not known.on_server


def test_plan_inputs_new_known_file_hash_only(tmp_path: Path, store: KnownFileStore) -> None:
    """A new file whose key the server is known to hold goes by hash key only."""
    path = write_file(tmp_path, "new.h", 4096)
    key = hash_key(file_blob(path.read_bytes()))
    store.mark_on_server([(FileIdentity.of(str(path)), key)])

    planned = plan_inputs(["new.h"], cwd=str(tmp_path), store=store, missing=(), now=time.time())

    assert planned[0].action is InputAction.HASH_ONLY
    assert planned[0].hash_key == key


def test_plan_inputs_missing_file_embedded(tmp_path: Path, store: KnownFileStore) -> None:
    """An old file reported missing is embedded in the next round."""
    path = write_file(tmp_path, "old.h", 4096, age_seconds=HOUR)

    planned = plan_inputs(
        ["old.h"], cwd=str(tmp_path), store=store, missing={"old.h"}, now=time.time()
    )

    assert planned[0].action is InputAction.EMBED
    assert planned[0].blob == file_blob(path.read_bytes())


def test_plan_inputs_missing_large_uploads_chunks(tmp_path: Path, store: KnownFileStore) -> None:
    """A missing file over 2 MiB embeds its FILE_META and lists its chunks for /s."""
    path = write_file(tmp_path, "big.bin", 5 * MiB, age_seconds=HOUR)
    meta, chunks = blob_for_content(path.read_bytes())

    planned = plan_inputs(
        ["big.bin"], cwd=str(tmp_path), store=store, missing={"big.bin"}, now=time.time()
    )

    item = planned[0]
    assert item.action is InputAction.UPLOAD_CHUNKS
    assert item.blob == meta
    assert item.blob is not None
    assert item.blob.blob_type == goma_pb2.FileBlob.FILE_META
    assert item.chunks == chunks
    assert len(item.chunks) == 3
    assert all(chunk.file_size == len(chunk.content) for chunk in item.chunks)
    assert item.hash_key == hash_key(meta)


def test_plan_inputs_new_large_meta_without_chunks(tmp_path: Path, store: KnownFileStore) -> None:
    """A new file over 2 MiB embeds its FILE_META and uploads no chunks yet."""
    path = write_file(tmp_path, "big.bin", 5 * MiB)
    meta, _ = blob_for_content(path.read_bytes())

    planned = plan_inputs(["big.bin"], cwd=str(tmp_path), store=store, missing=(), now=time.time())

    assert planned[0].action is InputAction.EMBED_META_WITHOUT_CHUNKS
    assert planned[0].blob == meta
    assert planned[0].chunks == ()


def test_plan_inputs_send_all_treats_old_as_new(tmp_path: Path, store: KnownFileStore) -> None:
    """While the send-all flag is set, an old unknown file is embedded."""
    write_file(tmp_path, "old.h", 4096, age_seconds=HOUR)
    store.send_all_content = True

    planned = plan_inputs(["old.h"], cwd=str(tmp_path), store=store, missing=(), now=time.time())

    assert planned[0].action is InputAction.EMBED


def test_record_missing_sets_send_all_over_half(tmp_path: Path, store: KnownFileStore) -> None:
    """More than half missing sets the send-all flag, and a clean Exec clears it."""
    for name in ("a.h", "b.h", "c.h"):
        write_file(tmp_path, name, 4096, age_seconds=HOUR)
    planned = plan_inputs(
        ["a.h", "b.h", "c.h"], cwd=str(tmp_path), store=store, missing=(), now=time.time()
    )

    record_missing(store, planned, {"a.h"})
    after_one = store.send_all_content
    record_missing(store, planned, {"a.h", "b.h"})
    after_two = store.send_all_content
    record_success(store, planned)

    assert not after_one
    assert after_two
    assert not store.send_all_content


def test_record_success_marks_keys_on_server(tmp_path: Path, store: KnownFileStore) -> None:
    """After a clean Exec the inputs' keys are on the server until reported missing."""
    write_file(tmp_path, "a.h", 4096)
    planned = plan_inputs(["a.h"], cwd=str(tmp_path), store=store, missing=(), now=time.time())

    record_success(store, planned)
    known_after_success = store.is_key_on_server(planned[0].hash_key)
    second = plan_inputs(["a.h"], cwd=str(tmp_path), store=store, missing=(), now=time.time())
    record_missing(store, planned, {"a.h"})

    assert known_after_success
    assert second[0].action is InputAction.HASH_ONLY
    assert not store.is_key_on_server(planned[0].hash_key)


def test_known_file_store_persists(tmp_path: Path) -> None:
    """Keys and the send-all flag survive closing and reopening the database."""
    identity = FileIdentity(path="/src/a.h", mtime_ns=123, size=4)
    first = KnownFileStore.open_in(tmp_path / "state")
    first.mark_on_server([(identity, "k" * 64)])
    first.send_all_content = True
    first.close()

    second = KnownFileStore.open_in(tmp_path / "state")
    known = second.lookup(identity)
    changed = second.lookup(FileIdentity(path="/src/a.h", mtime_ns=124, size=4))

    assert known is not None
    assert known.hash_key == "k" * 64
    assert known.on_server
    assert changed is None
    assert second.send_all_content
    second.close()


def test_known_file_store_new_key_not_on_server(store: KnownFileStore) -> None:
    """Recording a different key for a path drops its on-server mark, the same key keeps it."""
    identity = FileIdentity(path="/src/a.h", mtime_ns=1, size=4)
    store.mark_on_server([(identity, "a" * 64)])

    store.record(FileIdentity(path="/src/a.h", mtime_ns=2, size=4), "a" * 64)
    same_key = store.lookup(FileIdentity(path="/src/a.h", mtime_ns=2, size=4))
    store.record(FileIdentity(path="/src/a.h", mtime_ns=3, size=4), "b" * 64)
    new_key = store.lookup(FileIdentity(path="/src/a.h", mtime_ns=3, size=4))

    assert same_key is not None
    assert same_key.on_server
    assert new_key is not None
    assert not new_key.on_server


def test_chunk_batches_groups_of_five() -> None:
    """Chunks go to /s in order, at most five per request."""
    chunks = [
        goma_pb2.FileBlob(blob_type=goma_pb2.FileBlob.FILE_CHUNK, offset=i) for i in range(11)
    ]

    batches = chunk_batches(chunks)

    assert [len(batch) for batch in batches] == [5, 5, 1]
    assert [chunk.offset for batch in batches for chunk in batch] == list(range(11))


def _embedded_input(name: str, size: int) -> goma_pb2.ExecReq.Input:
    blob = file_blob(b"x" * size)
    return goma_pb2.ExecReq.Input(filename=name, hash_key=hash_key(blob), content=blob)


def test_shrink_embedded_caps_total_and_sorts() -> None:
    """Embedded content stops once 1 MiB is kept, keys stay, and the order is by name."""
    inputs = [_embedded_input(f"f{index:02d}.h", 300 * 1024) for index in range(10)]
    meta, _ = blob_for_content(b"m" * (3 * MiB))
    inputs.append(goma_pb2.ExecReq.Input(filename="a-meta", hash_key=hash_key(meta), content=meta))
    inputs.append(goma_pb2.ExecReq.Input(filename="z-key-only", hash_key="0" * 64))

    for seed in range(20):
        shrunk = shrink_embedded(inputs, rng=random.Random(seed))

        kept = [entry for entry in shrunk if entry.HasField("content")]
        kept_files = [entry for entry in kept if entry.content.blob_type == goma_pb2.FileBlob.FILE]
        kept_bytes = embedded_bytes(shrunk)
        largest = max(len(entry.content.content) for entry in kept_files)
        assert [entry.filename for entry in shrunk] == sorted(entry.filename for entry in inputs)
        assert [entry.hash_key for entry in shrunk] == [
            entry.hash_key for entry in sorted(inputs, key=lambda entry: entry.filename)
        ]
        assert kept_bytes >= MAX_EMBEDDED_BYTES
        assert kept_bytes - largest < MAX_EMBEDDED_BYTES
        assert len(kept_files) == 4
        assert any(entry.filename == "a-meta" for entry in kept)


def test_shrink_embedded_keeps_small_requests_whole() -> None:
    """Requests under the cap keep every embedded file."""
    inputs = [_embedded_input(name, 1000) for name in ("c.h", "a.h", "b.h")]

    shrunk = shrink_embedded(inputs, rng=random.Random(1))

    assert [entry.filename for entry in shrunk] == ["a.h", "b.h", "c.h"]
    assert all(entry.HasField("content") for entry in shrunk)


def test_exec_inputs_builds_sorted_entries(tmp_path: Path, store: KnownFileStore) -> None:
    """Planned inputs become ExecReq inputs with content only where planned."""
    write_file(tmp_path, "z.c", 4096)
    write_file(tmp_path, "a.h", 4096, age_seconds=HOUR)
    planned = plan_inputs(
        ["z.c", "a.h"], cwd=str(tmp_path), store=store, missing=(), now=time.time()
    )

    inputs = exec_inputs(planned, rng=random.Random(0))

    assert [entry.filename for entry in inputs] == ["a.h", "z.c"]
    assert not inputs[0].HasField("content")
    assert inputs[1].HasField("content")
    assert inputs[1].hash_key == hash_key(inputs[1].content)
