"""The Lambda metadata endpoint, as `forkric local` serves it beside its Runtime API.

On Lambda (AWS documentation, "Using the Lambda metadata endpoint", API version 2026-01-15) the
environment names the server in `AWS_LAMBDA_METADATA_API` (host:port) and gives a per-environment
token in `AWS_LAMBDA_METADATA_TOKEN`; `GET /2026-01-15/metadata/execution-environment` with
`Authorization: Bearer <token>` answers `{"AvailabilityZoneID": "use1-az1"}` with
`Cache-Control: private, max-age=43200, immutable`, and 401 without the token. Powertools' metadata
utility and OpenTelemetry's Lambda resource detector read it.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets

PATH = "/2026-01-15/metadata/execution-environment"
API_ENV = "AWS_LAMBDA_METADATA_API"
TOKEN_ENV = "AWS_LAMBDA_METADATA_TOKEN"
CACHE_CONTROL = b"private, max-age=43200, immutable"
_DIRECTIONS = {"east": "e", "west": "w", "north": "n", "south": "s", "central": "c",
               "northeast": "ne", "northwest": "nw", "southeast": "se", "southwest": "sw"}
_REGION = re.compile(r"([a-z]{2})-(gov-|iso-|isob-)?([a-z]+)-(\d+)")

Reply = tuple[int, bytes, list[tuple[bytes, bytes]]]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def availability_zone_id(region: str) -> str:
    """The first zone's id in AWS's naming: us-east-1 -> use1-az1, ap-southeast-2 -> apse2-az1,
    us-gov-west-1 -> usgw1-az1; an unknown shape gives use1-az1."""
    match = _REGION.fullmatch(region)
    if not match or match.group(3) not in _DIRECTIONS:
        return "use1-az1"
    area, partition, direction, number = match.groups()
    return f"{area}{(partition or '')[:1]}{_DIRECTIONS[direction]}{number}-az1"


def answer(authorization: str | None, token: str, region: str) -> Reply:
    """The endpoint's reply to a GET carrying this Authorization header."""
    given = (authorization or "").encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, f"Bearer {token}".encode()):
        body = json.dumps({"message": "Unauthorized"}).encode()
        return 401, body, [(b"content-type", b"application/json")]
    body = json.dumps({"AvailabilityZoneID": availability_zone_id(region)}).encode()
    return 200, body, [(b"content-type", b"application/json"), (b"cache-control", CACHE_CONTROL)]
