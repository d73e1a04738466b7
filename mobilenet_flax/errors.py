"""The project's error base class.

An `Error` says what went wrong and what to do in its message, so the
command-line programs print it as one `error:` line, without a traceback,
and exit non-zero. Anything else is a bug, and keeps its traceback.
"""


class Error(Exception):
  """An error whose message is for the user."""
