"""The one exception type a user's mistake raises.

The CLI turns a :class:`VaelabError` into a single line on stderr and exit status 2;
anything else is a bug in vaelab and keeps its traceback.
"""


class VaelabError(Exception):
    """A problem with what the user handed us; the message names the problem and the fix."""
