"""The local platform restarted: its users stay signed in (the TUI's saved session keeps working)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from helpers import REAL, Mailbox, sign_up

from cfd_cli.platform import Platform
from shared.cache.memory import MemoryCache

pytestmark = pytest.mark.skipif(REAL, reason="the embedded platform's own restart")


async def test_a_clean_restart_keeps_sessions_and_a_logout_stays_a_logout(make_settings, tmp_path):
    settings = make_settings(env="dev", data_dir=tmp_path, database={"url": f"sqlite:///{tmp_path / 'cfd.sqlite3'}"})
    first = Platform(settings, ("dbproc", "server"), migrate_db=True)
    await first.start()
    try:
        async with httpx.AsyncClient(base_url=first.base_url + "/api/v1") as api:
            kept = (await sign_up(api, Mailbox(outbox=tmp_path / "outbox"), "kept@example.com"))["access_token"]
            gone = (await api.post("/auth/signin", json={"email": "kept@example.com",
                                                         "password": "correct horse battery"})).json()["access_token"]
            assert (await api.post("/auth/logout", headers={"Authorization": f"Bearer {gone}"})).status_code == 204
    finally:
        await first.stop()
    assert (tmp_path / "cache-snapshot").exists() and (tmp_path / "jwt-secret").stat().st_mode & 0o077 == 0

    second = Platform(make_settings(env="dev", data_dir=tmp_path,
                                    database={"url": f"sqlite:///{tmp_path / 'cfd.sqlite3'}"}), ("dbproc", "server"))
    await second.start()
    try:
        async with httpx.AsyncClient(base_url=second.base_url + "/api/v1") as api:
            me = await api.get("/auth/me", headers={"Authorization": f"Bearer {kept}"})
            assert me.status_code == 200 and me.json()["user"]["email"] == "kept@example.com"
            out = await api.get("/auth/me", headers={"Authorization": f"Bearer {gone}"})
            assert out.status_code == 401
    finally:
        await second.stop()


async def test_the_snapshot_is_read_once_and_keeps_only_keys_that_expire(tmp_path):
    path = tmp_path / "cache-snapshot"
    cache = MemoryCache(snapshot=path)
    await cache.set("session:1", b"s", ttl=60)
    await cache.set("otp:x", b"o", ttl=0.001)
    await cache.set_many({"credentials:x": b"c"})
    await asyncio.sleep(0.01)  # the code expires before the stop
    await cache.close()

    restored = MemoryCache(snapshot=path)
    assert not path.exists()  # a crash before the next clean stop brings nothing back
    assert await restored.get_many("session:1", "otp:x", "credentials:x") == [b"s", None, None]
    assert 55 < await restored.ttl("session:1") <= 60
