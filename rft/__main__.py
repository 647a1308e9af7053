"""`python -m rft ...`, which is what `torchrun -m rft train CONFIG` runs on every rank."""

from rft.cli import main

main()
