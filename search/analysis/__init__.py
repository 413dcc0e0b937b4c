"""Reading studies: result rows, seed summaries, hypervolume, training cost, the report.

Never imports torch at import time: read-side commands stay fast.
"""
