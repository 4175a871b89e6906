# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The project's error hierarchy.

Every error a user can cause (bad input, bad config, bad files) is a ``VssmError``, so drivers
(the node, the CLI) can catch exactly these, report one clear line and carry on.
"""


class VssmError(Exception):
    """Base of all errors raised on purpose by vssm_ros."""


class ConfigError(VssmError, ValueError):
    """An invalid configuration value or file."""


class MessageError(VssmError, ValueError):
    """A message that cannot be converted (unknown encoding, size mismatch, ...)."""


class SourceError(VssmError):
    """An input (bag, folder, file) that cannot be read as asked."""


class BagError(SourceError):
    """A bag that is missing, truncated, unreadable, or lacks the configured topics."""


class SyncError(VssmError, ValueError):
    """Stamps that cannot be paired or that go backwards."""


class StateError(VssmError):
    """An engine state or checkpoint that cannot be used (wrong version, shapes, ...)."""
