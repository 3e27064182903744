"""``python -m odedsl`` runs the command line."""

from odedsl.cli import console_main

console_main()
