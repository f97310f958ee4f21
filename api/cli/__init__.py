"""The `heddle` command line: `main.app` assembles one module per command group; they
talk to a running Heddle through the public client in `client.py`."""
