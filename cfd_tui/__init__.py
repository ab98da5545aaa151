"""cfd_tui: the trader's terminal (Textual), built on the client library `cfd_client`.

Run it with `cfd-tui --api URL` (`cfd_tui.main:run`), or `cfd demo` for the whole platform and the TUI in one
terminal; build it in code with `cfd_tui.app.create_app`.
"""
