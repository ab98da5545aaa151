"""The retention windows an operator sets: commands kept their hours, 1-minute candles their days but never
less than the poller's history window (or every poller start would fetch the purged minutes again)."""

from __future__ import annotations

from cfd_dbproc.retention import HOUR_MS, Retention
from shared.settings import load_settings

NOW = 1_800_000_000_000


def _retention(**environ: str) -> Retention:
    settings = load_settings(environ=environ)
    return Retention(settings.retention, db=None,  # type: ignore[arg-type]  # the windows need no database
                     history_hours=settings.prices.candle_history_hours)


def test_defaults_keep_commands_48_hours_and_minute_candles_30_days():
    retention = _retention()
    assert retention.command_cutoff(NOW) == NOW - 48 * HOUR_MS
    assert retention.candle_cutoff(NOW) == NOW - 30 * 24 * HOUR_MS


def test_minute_candles_outlive_the_poller_history_window_and_zero_keeps_them():
    short = _retention(CFD_CANDLE_MINUTE_RETENTION_DAYS="1", CFD_CANDLE_HISTORY_HOURS="720")
    assert short.candle_cutoff(NOW) == NOW - 721 * HOUR_MS
    assert _retention(CFD_CANDLE_MINUTE_RETENTION_DAYS="0").candle_cutoff(NOW) is None
    assert _retention(CFD_COMMAND_RETENTION_HOURS="1").command_cutoff(NOW) == NOW - HOUR_MS
