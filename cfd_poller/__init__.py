"""cfd_poller: price ingestion.

A source (`backpack`, `sim`, `replay`) yields validated `PriceTick`s; the poller publishes each one to the
`price-updates` topic keyed by symbol, and watches every market for a feed that has gone quiet.
`cfd_poller.service.start_poller` is the entry point; `cfd_poller.local_exchange` is a Backpack-protocol
server for tests and offline demos.
"""
