"""The size report's machinery, in three steps over one column specification.

* collect: artifacts -> rows (the only reader of artifacts; never recomputes a figure)
* decide:  fits, what to ship, the CI gates, the diff against the previous report
* render:  terminal, markdown, csv, html and json from columns.py (a column is defined once
  for every format); plots: the trade-off plots by matplotlib (imported only when drawing)

The stage (tasks/report.py) wires them and writes the files. Nothing here imports numpy or
TensorFlow; matplotlib only inside plots.draw.
"""
