"""The TUI's Textual stylesheets (`*.tcss`), a package so that wheels ship them as package data."""
