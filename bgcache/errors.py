"""The exceptions bgcache raises on purpose.

Every error derives from :class:`BgcacheError` and also from the builtin exception a
caller would already catch (``ValueError``, ``FileNotFoundError``, ``LookupError``...),
so ``except ValueError`` keeps working. Messages name the thing, what was expected,
what was found and what to do. Only the command line turns these into exit codes.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BgcacheError(Exception):
    """Base class of every error bgcache raises on purpose."""


class UsageError(BgcacheError, ValueError):
    """A value given by the user is invalid (the CLI exits with code 2)."""


class InvalidSeedError(UsageError):
    """A seed is not an integer in [-2**63, 2**63 - 1]."""


class InvalidKeyError(UsageError):
    """An event key (seed, index) is malformed."""


class ConfigError(UsageError):
    """A config file (``--config``) is unreadable, not TOML, or has an unknown key or a bad value.

    A usage mistake (the CLI exits with code 2): a config file stands for command-line
    options, so its mistakes get the exit code of the same mistakes on the command line.
    """


class ConfigNotFoundError(ConfigError, FileNotFoundError):
    """A config file does not exist."""


class UnknownModelError(BgcacheError, LookupError):
    """No generator of that name is registered."""


class GeometryError(BgcacheError, ValueError):
    """A sensor id, layer, ladder or pixel coordinate is out of range."""


class EventError(BgcacheError, ValueError):
    """A sparse event is malformed (lengths, dtypes, bounds or sort order)."""


class MissingDependencyError(BgcacheError, ImportError):
    """An optional dependency (torch, matplotlib...) is needed but not installed."""


class CheckpointError(BgcacheError, ValueError):
    """A checkpoint file cannot be used."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint file does not exist."""


class CheckpointFormatError(CheckpointError):
    """A file is not a readable torch checkpoint (not torch, truncated, not a state_dict)."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's keys or shapes do not match the requested model."""


class PoolNotFoundError(BgcacheError, FileNotFoundError):
    """No pool at the given location."""


class NotAPoolError(BgcacheError, ValueError):
    """The location holds something that is not a bgcache pool (a file, another Zarr group)."""


class PoolFormatError(BgcacheError, ValueError):
    """A pool's metadata is damaged, or the pool has a newer format version."""


class PoolMismatchError(BgcacheError, ValueError):
    """A build's model, checkpoint or content options differ from what the pool records."""


class PoolExistsError(BgcacheError, FileExistsError):
    """A build was told not to resume (``--no-resume``) but the pool holds blocks of its range."""


class PoolWriteError(BgcacheError, OSError):
    """Writing to a pool failed (read-only location, disk full...); complete blocks are kept."""


class PoolObjectError(BgcacheError, OSError):
    """A pool object is not a regular file or directory inside the pool (a symbolic link, a
    device, a named pipe), cannot be read (permissions), or is larger than its kind allows."""


class StorageServerError(BgcacheError, OSError):
    """A storage server's answer is not what was asked, or not complete in time: an HTML page,
    a redirect loop or a redirect to another scheme, a listing that is no WebDAV listing,
    exceeds its bounds or names paths outside the pool, more bytes than a range asked, or
    an answer that missed the request's deadline. The server is at fault, not the pool."""


class ImportSourceError(BgcacheError, ValueError):
    """A background overlay ROOT file cannot be imported (names the file, the entry and
    what to do)."""


class CorruptBlockError(BgcacheError, ValueError):
    """Stored bytes of a block are damaged (checksum, length, frame or content)."""


class EventNotFoundError(BgcacheError, LookupError):
    """No event with that key in the pool."""


class DeviceError(BgcacheError, RuntimeError):
    """A valid device name that this machine cannot run on (no CUDA GPU, no such GPU index)."""


class OutputError(BgcacheError, OSError):
    """An output file (a plot) cannot be written; nothing is left under its name."""


class SchedulerError(BgcacheError, ConnectionError):
    """A Dask scheduler cannot be reached, or a distributed build's task failed for good."""


class PoolExhaustedError(BgcacheError, LookupError):
    """An overlay job used up its share of the pool and was told not to generate or reuse."""


class PositionError(EventNotFoundError, IndexError):
    """A pool position is out of range."""


class DeviceMemoryError(BgcacheError, MemoryError):
    """A forward pass does not fit into the GPU's memory (use a smaller batch)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return a ' (did you mean ...?)' suffix for a mistyped name, or ''.

    Example:
        >>> did_you_mean("convnt", ["convnet", "resnet"])
        " (did you mean 'convnet'?)"
        >>> did_you_mean("xyz", ["convnet"])
        ''
    """
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class BgcacheWarning(UserWarning):
    """Base class of bgcache warnings."""


class UntrainedCheckpointWarning(BgcacheWarning):
    """A checkpoint is an untrained demo network, not a physics model."""
