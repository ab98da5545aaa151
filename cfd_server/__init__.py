"""cfd_server."""
