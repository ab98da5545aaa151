"""How the example bots connect: the server's URL from `CFD_API_URL` (default `http://127.0.0.1:8000`, where
`cfd up` listens) and the API key from `CFD_API_KEY`, else the one `cfd trade login` stored for that URL."""

from __future__ import annotations

import os
import sys

from cfd_client import ApiClient, api_root
from cfd_client.keys import KeyStore


def client() -> ApiClient:
    url = api_root(os.environ.get("CFD_API_URL", "http://127.0.0.1:8000"))
    key = KeyStore().load(url)
    if key is None:
        sys.exit(f"No API key for {url}: run `cfd trade login` (or set CFD_API_KEY) first.")
    return ApiClient(url, token=key)
