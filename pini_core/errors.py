"""One error hierarchy for everything a user can get wrong.

Every error the engine raises for bad input (a setting, a file, a checkpoint, a dataset,
a model name, a network that does not answer) derives from :class:`PiniError` and carries
a message that says what to do. The CLI prints ``error: <message>`` and exits with code 2;
the app shows the message. Anything else that escapes is a bug.

Messages never contain server paths the user did not type (the app's scratch folders).
"""
from __future__ import annotations


class PiniError(Exception):
    """Base class: a problem with the user's input, files or environment, not a bug."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError-style repr quoting would make messages unreadable
        return str(self.args[0]) if self.args else self.__class__.__name__


class ConfigError(PiniError, ValueError):
    """An experiment / noise / training setting is invalid (raised before any work)."""


class DataError(PiniError, ValueError):
    """A dataset, image, zip or split cannot be used as given."""


class ModelLoadError(PiniError, RuntimeError):
    """A backbone (CLIP / MLLM) cannot be loaded: unknown name, missing weights, offline."""


class CheckpointFormatError(PiniError, ValueError):
    """A checkpoint is missing, corrupt, tampered with, or belongs to another model."""


class TrainingStopped(PiniError, RuntimeError):
    """Training cannot start or continue (no images, no trainable parameters, ...)."""


class UnsafePathError(PiniError, PermissionError):
    """A path or hub repository that this context is not allowed to open."""


class PromptError(ConfigError):
    """Class prompts cannot be built from the given template and class names."""


class PromptTooLongError(PromptError, DataError):
    """A class name makes a prompt longer than the text encoder's context (checked once,
    before any work, by :func:`pini_core.data.templates.check_prompt_lengths`)."""


class ArgumentError(ConfigError):
    """A command-line argument is out of range (checked while parsing, before any work)."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A dataset root, image folder or listed file does not exist."""


class UnknownNameError(DataError, KeyError):
    """A dataset, template or other registry name that does not exist (also a KeyError, so
    existing ``except KeyError`` code keeps working)."""
