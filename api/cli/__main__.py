"""`python -m api.cli`: the `heddle` command, for processes started without the script."""

from api.cli.main import app

app()
