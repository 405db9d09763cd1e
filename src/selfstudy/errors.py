"""The one exception type for bad user input."""


class UserError(Exception):
    """Bad input from the user (a config, a factor string, a label count, a file).

    The CLI prints it as one line, ``selfstudy: error: <message>``, and exits with status 2. The message
    names what is wrong and what is allowed.
    """


def require(condition: bool, message: str) -> None:
    """Raise :class:`UserError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise UserError(message)
