"""Helpers for the auth tests: the error shape, password hashes as version 1 made them, and clients that
come from an address of their own."""

from __future__ import annotations

import base64
import hashlib
import random

import bcrypt
import httpx

LONG_PASSWORD = "zebra ukulele monsoon quartz lantern " * 3  # 111 bytes: over bcrypt's 72


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """The response is an error of `status` (and `code`) in the one error shape; returns the error."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["message"] and error["message"][0].isupper()
    if code:
        assert error["code"] == code, error
    return error


def v1_hash(password: str, rounds: int = 4) -> str:
    """A hash as version 1 made it: the password itself, or base64(SHA-256) of one over 72 bytes."""
    raw = password.encode()
    prehashed = raw if len(raw) <= 72 else base64.b64encode(hashlib.sha256(raw).digest())
    return bcrypt.hashpw(prehashed, bcrypt.gensalt(rounds)).decode()


def sha256_stand_in(password: str) -> str:
    """base64(SHA-256(password)): what a leak of an unsalted SHA-256 elsewhere hands an attacker."""
    return base64.b64encode(hashlib.sha256(password.encode()).digest()).decode()


def loopback_address() -> str:
    """A random address in 127.0.0.0/8 (all of it is this machine on Linux): a client of its own."""
    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def client_from(base_url: str, address: str | None = None) -> httpx.AsyncClient:
    """An HTTP client whose connections come from `address` (a fresh loopback address by default)."""
    transport = httpx.AsyncHTTPTransport(local_address=address or loopback_address())
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=15)
