"""Errors about a user's input: the message names the file and the fix."""


class InputError(ValueError):
    """Bad input data (annotation, image, cases table, checkpoint, ...)."""
