"""The one exception type for bad user input: the CLI prints its message on one line and exits 2."""


class PeftqaError(Exception):
    """A problem the user can fix (bad file, unknown name, bad value); never a bug in peftqa.

    The message is kept to one line whatever it quotes (a title or an id may hold line breaks), so
    that the CLI's one line of error is always one line.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(" ".join(str(message).splitlines()))
