"""The TUI's screens: sign-in, sign-up and code entry, the dashboard, history, help and the dialogs."""
