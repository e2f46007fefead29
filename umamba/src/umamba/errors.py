"""Errors a person can act on.

`UserError` is raised for bad input anywhere in the package. It subclasses `ValueError` so library callers can
catch it the usual way; the command line turns it into an `error` event (or a plain message) with its hint, and
never into a traceback.
"""


class UserError(ValueError):
    """Bad input, with a message that says what was expected and an optional hint that says what to do."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  -> {self.hint}"
