"""Command-line tools (``diffog-ros <command>``)."""
