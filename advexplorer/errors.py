"""The one exception type for problems a user can fix.

Every error a person can cause (a corrupt image, a file that is not a model, weights that
do not fit, a mask of the wrong size, an ε out of range) is raised as :class:`UserError`
with a message that says what is wrong *and* what to do about it. The CLI prints it on one
line and exits non-zero; the GUI shows it in a dialog. Anything else is a bug.
"""


class UserError(Exception):
    """A problem with the user's input, with a message that says what to fix."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # one line, always
        return " ".join(self.message.split())
