"""What each command does, one module per command family; no argument parsing (that is ``ecgsearch.cli``).

Mistakes raise ``UserError``, which the command line turns into one ``error:`` line and its
``exit_code`` (2 for a mistake the user can correct).
"""
