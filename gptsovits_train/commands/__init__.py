"""`gsv-train` commands, one module each: thin Typer functions that `cli.py` registers on its app."""
