"""The one exception a user sees: a mistake they can fix, said in one line."""


class TinyMLError(Exception):
    """A mistake the user can fix (bad config or data, missing tool, model too big).

    Stage actions turn it into a doit failure that prints the message without a traceback and
    exits with status 2. Anything else that escapes an action is our bug and keeps its traceback.
    """
