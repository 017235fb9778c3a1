"""Report inputs the server could not obtain back to the goma client (pure)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from gomaproxy.protos import goma_data_pb2 as goma_pb2


def fill_missing_inputs(
    response: goma_pb2.ExecResp,
    request: goma_pb2.ExecReq,
    missing: Sequence[tuple[str, str]],
    *,
    limit: int,
    rng: random.Random | None = None,
) -> None:
    """Put ``(filename, reason)`` pairs into ``response`` as missing_input/missing_reason.

    At most ``limit`` pairs are reported (0 means no limit), chosen at random so repeated
    rounds make progress on large lists; pairs stay aligned, and the result follows the
    order of the request's inputs (a name given twice counts at its last position).
    """
    pairs = list(missing)
    if limit and len(pairs) > limit:
        (rng or random).shuffle(pairs)
        pairs = pairs[:limit]

    position = {entry.filename: index for index, entry in enumerate(request.input)}
    pairs.sort(key=lambda pair: position.get(pair[0], 0))

    for filename, reason in pairs:
        response.missing_input.append(filename)
        response.missing_reason.append(reason)
