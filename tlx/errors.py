"""Expected failures, with messages written for people.

Every error a user can cause (a config value, a file, a checkpoint, an input) is raised as a
:class:`TlxError` whose message says what was expected, what was found and what to do. The entry
points (``tlx.train``, ``tlx.predict``, ``tlx.inspect``, the experiments) print that message and
exit with :data:`EXIT_CODE` instead of a traceback; ``--verbosity=1`` shows the traceback too.

The subclasses also derive from the built-in exception that fits, so ``except ValueError`` keeps
catching a bad config value.
"""

from __future__ import annotations

# What an entry point exits with on a TlxError (argparse and absl use 2 for a usage error).
EXIT_CODE = 2


class TlxError(Exception):
    """An expected failure; the message is the whole report."""


class ConfigError(TlxError, ValueError):
    """A config key or value that cannot work (names the key, the value and the allowed range)."""


class InputError(TlxError, ValueError):
    """Bad input to a command: an empty text, an unreadable image or weights file."""


class CheckpointError(TlxError, OSError):
    """A checkpoint that is missing, unreadable or damaged."""


class CheckpointIntegrityError(CheckpointError):
    """A checkpoint whose arrays differ from the checksums written with them."""


class PlanError(ConfigError):
    """A transfer plan that is malformed, matches nothing, or freezes nothing it claims to."""


class FeatureCacheError(ConfigError):
    """A feature cache that cannot be built correctly for this run."""


class ResumeMismatchError(ConfigError):
    """A resume whose config differs from the run's own in a way that would change the run."""
