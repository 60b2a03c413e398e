"""The one exception type for bad user input: the CLI prints its message on one line and exits 2."""


class PeftqaError(Exception):
    """A problem the user can fix (bad file, unknown name, bad value); never a bug in peftqa."""
