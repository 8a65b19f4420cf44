"""The `ovp` command line."""
