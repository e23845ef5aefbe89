"""User-facing errors: the CLI prints these as one line, without a traceback."""


class MerjaxError(Exception):
  """Bad input or an unusable environment, described in words a user can act on."""
