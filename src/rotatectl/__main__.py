"""``python -m rotatectl`` runs the CLI."""

from rotatectl.cli.main import main

main()
