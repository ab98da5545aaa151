"""cfd_poller."""
