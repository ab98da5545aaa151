"""Contracts, settings, trading maths and backends shared by every CFD Broker service."""

__version__ = "0.1.0"
