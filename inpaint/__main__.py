"""`python -m inpaint` runs the command-line interface."""

from inpaint.cli import main

main()
