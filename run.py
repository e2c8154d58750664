"""``python run.py [task=...] [experiment=...] [group=option ...] [key=value ...]``: the same as ``transferlab ...``."""

from transferlab.main import cli

if __name__ == "__main__":
    cli()
