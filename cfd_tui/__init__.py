"""cfd_tui: the trader's terminal (Textual) and its client library (`cfd_tui.client`).

Run it with `cfd-tui --api URL` (`cfd_tui.main:run`), or `cfd demo` for the whole platform and the TUI in one
terminal; build it in code with `cfd_tui.app.create_app`.
"""
