"""cfd_cli."""
