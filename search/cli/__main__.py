"""``python -m ecgsearch.cli``: what Slurm job scripts and ``run --workers`` start."""

from ecgsearch.cli import main

main()
