"""cfd_tui."""
