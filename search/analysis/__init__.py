"""Reading studies: result rows, seed summaries, hypervolume, training cost, the report.

Never imports torch at import time (tested): read-side commands start in about two seconds.
"""
