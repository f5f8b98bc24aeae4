"""forkric local's request ids: what `str(uuid.uuid4())` would give, made faster."""

from __future__ import annotations

import re
import uuid

from forkric.local.invocations import request_id

UUID_TEXT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_request_ids_are_version_4_uuids_as_uuid_writes_them() -> None:
    ids = [request_id() for _ in range(2000)]
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == text
        assert UUID_TEXT.match(text)
    assert len(set(ids)) == len(ids)
