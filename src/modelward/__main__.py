"""`python -m modelward`: the same command line as the `modelward` script."""

from modelward.interfaces.cli import entry_point

if __name__ == "__main__":
    entry_point()
