"""The one exception type m3l shows to users as a single line instead of a traceback."""


class M3LError(Exception):
    """Bad input a user can fix: the message names the file or key and says what to do."""
