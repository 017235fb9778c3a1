"""goma's file service: StoreFile (``/s``) and LookupFile (``/l``) over a FileStore.

StoreFile returns one hash key per request blob, in request order, with ``""`` for a blob
that was not stored.  LookupFile returns one FileBlob per requested key, in request order,
with a blob whose only field is ``blob_type = FILE_UNSPECIFIED`` for a key it cannot serve.
goma clients match both responses to their requests by index.
"""

from __future__ import annotations

import anyio
import structlog
from google.protobuf.message import DecodeError

from gomaproxy.digest import is_valid_hash
from gomaproxy.errors import BadRequest
from gomaproxy.goma.blob import check_file_blob, hash_key_of_serialized
from gomaproxy.goma.filestore import BlobTooLargeError, FileStore
from gomaproxy.protos import goma_data_pb2 as goma_pb2

logger = structlog.get_logger(__name__)


class FileService:
    """StoreFile and LookupFile semantics over a ``FileStore``."""

    def __init__(self, store: FileStore) -> None:
        self._store = store

    async def store_file(self, request: goma_pb2.StoreFileReq) -> goma_pb2.StoreFileResp:
        """Store every valid blob of ``request`` and return their keys, index-aligned.

        Each key is computed here from the re-serialized blob.  An invalid blob, or one the
        store cannot take, gets ``""`` at its index.

        Raises:
            BadRequest: if the request contains exactly one blob and that blob is invalid,
                so that the frontend returns HTTP 400 as goma-server does.
        """
        blobs = list(request.blob)
        if len(blobs) == 1:
            check_file_blob(blobs[0])

        keys = [""] * len(blobs)
        async with anyio.create_task_group() as task_group:
            for index, blob in enumerate(blobs):
                task_group.start_soon(self._store_at_index, blob, index, keys)
        return goma_pb2.StoreFileResp(hash_key=keys)

    async def lookup_file(self, request: goma_pb2.LookupFileReq) -> goma_pb2.LookupFileResp:
        """Return one blob per requested key, in request order.

        A key that is invalid or not stored gets a blob whose only field is
        ``blob_type = FILE_UNSPECIFIED``, set explicitly so that it is on the wire.
        """
        keys = list(request.hash_key)
        found: list[goma_pb2.FileBlob | None] = [None] * len(keys)
        async with anyio.create_task_group() as task_group:
            for index, key in enumerate(keys):
                task_group.start_soon(self._lookup_at_index, key, index, found)

        response = goma_pb2.LookupFileResp()
        for blob in found:
            response.blob.append(blob if blob is not None else _unspecified_blob())
        return response

    async def store_blob(self, blob: goma_pb2.FileBlob) -> str:
        """Validate and store one blob, and return the hash key computed for it.

        Raises:
            InvalidFileBlob: if the blob breaks the goma validity rules (a ``BadRequest``).
            BlobTooLargeError: if the blob is larger than the whole store.
            OSError: if the store fails to write it.
        """
        check_file_blob(blob)
        data = blob.SerializeToString()
        key = hash_key_of_serialized(data)
        await self._store.put(key, data)
        return key

    async def lookup_blob(self, key: str) -> goma_pb2.FileBlob | None:
        """Return the blob stored under ``key``, or None if the key is invalid or unknown."""
        if not is_valid_hash(key):
            return None
        data = await self._store.get(key)
        if data is None:
            return None

        try:
            return goma_pb2.FileBlob.FromString(data)
        except DecodeError as exc:
            logger.warning("file_service_stored_blob_unparsable", key=key, error=str(exc))
            return None

    async def _store_at_index(self, blob: goma_pb2.FileBlob, index: int, keys: list[str]) -> None:
        try:
            keys[index] = await self.store_blob(blob)
        except BlobTooLargeError as exc:
            logger.warning("file_service_blob_too_large", index=index, error=exc.message)
        except BadRequest as exc:
            logger.info("file_service_blob_rejected", index=index, error=exc.message)
        except OSError as exc:
            logger.warning("file_service_store_failed", index=index, error=str(exc))

    async def _lookup_at_index(
        self, key: str, index: int, found: list[goma_pb2.FileBlob | None]
    ) -> None:
        try:
            found[index] = await self.lookup_blob(key)
        except OSError as exc:
            logger.warning("file_service_lookup_failed", key=key, index=index, error=str(exc))


def _unspecified_blob() -> goma_pb2.FileBlob:
    blob = goma_pb2.FileBlob()
    blob.blob_type = goma_pb2.FileBlob.FILE_UNSPECIFIED
    return blob
