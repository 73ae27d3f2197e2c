"""The one exception type for user mistakes: the CLI prints its message on one line, no traceback."""


class UserError(Exception):
    """Bad input or a misuse the user can fix; the message names the file, line or field and the fix."""
