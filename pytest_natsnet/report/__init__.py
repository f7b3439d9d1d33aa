"""The end-of-run report: the cell × suite grid, failed cells' tables, timings (terminal and HTML), and the
progress of long steps while they run.

``grid`` is pure (test outcomes → grid data), ``terminal`` and ``html`` render it, ``recorder`` turns pytest's
reports into outcomes, ``progress`` says what a long step is doing.
"""
