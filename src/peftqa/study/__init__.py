"""`peftqa study`: sweep -> train at the chosen rate -> report, for several methods (pipeline.py), and the
study folder's record of what it finished (record.py)."""
