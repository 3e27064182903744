"""Reading and writing files: CSV tables, plots."""
