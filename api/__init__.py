"""The HTTP API and the `heddle` command line."""
