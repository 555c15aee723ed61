"""`python -m smo_labelstudio.cli`: the `smo` command."""

from smo_labelstudio.cli import main

main()
