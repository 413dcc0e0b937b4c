"""Slurm job templates shipped with ecgsearch (rendered by `ecgsearch slurm submit`)."""
