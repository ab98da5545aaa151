"""The wire contracts, by where they travel: `rest` (the public models and REST bodies), `bus` (between
the services), `ws` (the feed), `events` (account events), and `quote` (the broker quote they all carry).

Every contract is a msgspec Struct; `encode` writes any of them as JSON (a `Decimal` as a string).
"""

from __future__ import annotations

from typing import Any

import msgspec


def encode(value: Any) -> bytes:
    """JSON-encode any contract (Decimals become strings)."""
    return _encoder.encode(value)


_encoder = msgspec.json.Encoder(decimal_format="string")
