"""The error the module's logic raises for anything a person can fix (bad input, unusable model, failed run).

Qt-free and independent of the `umamba` package (which may not be installed yet when the module loads). The
presenter shows `message` in the panel and `hint` below it; `details` (for example the end of a process log) go
into the error dialog's details.
"""


class UserFacingError(Exception):
    def __init__(self, message, hint=None, details=None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self):
        return self.message if not self.hint else f"{self.message}\n{self.hint}"
