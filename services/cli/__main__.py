"""``python -m services.cli``: the ``act`` command-line tool."""

from services.cli.main import app

app(prog_name="act")
