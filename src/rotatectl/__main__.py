"""``python -m rotatectl`` runs the CLI."""

from rotatectl.cli.app import main

main()
