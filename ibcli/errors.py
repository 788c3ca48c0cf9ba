"""Errors a user can cause. The CLI prints their message as one line and exits 2."""


class UserError(Exception):
    """A mistake in the user's input (option, run id, data dir, store), not a bug.

    The message is one line naming the problem and the fix.
    """
