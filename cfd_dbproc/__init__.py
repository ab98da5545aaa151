"""cfd_dbproc."""
