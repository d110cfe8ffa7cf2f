"""Reader errors that survive MONAI's ``LoadImage(reader=instance)`` instead of being swallowed by it.

``LoadImage(reader=r)`` (MONAI 1.6, ``monai.transforms.io.array.LoadImage.__call__``) registers ``r`` after its
default readers and calls each reader's ``read`` inside ``try / except Exception``: when ``r.read`` raises, it
logs the error and tries ITK, nibabel, pydicom..., then either loads the file with one of them (a DICOM series
with a missing slice comes back as 11 of 12 slices, a folder with two series as one of them) or raises
"cannot find a suitable reader ... install the reader libraries" with the real cause buried in a traceback.
``get_data`` is called outside that ``try``. So for a file a reader recognises, ``read`` returns an
:class:`UnreadableFile` instead of raising, and ``get_data`` raises its error unchanged: through ``LoadImage``
(designated or runtime reader alike) the caller sees the reader's own one-line error. A file the reader does not
recognise still raises from ``read``, so ``LoadImage`` moves on to its other readers as it intends.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from monai.utils import ensure_tuple

__all__ = ["UnreadableFile", "read_or_defer", "raise_deferred"]

_Image = TypeVar("_Image")


@dataclass(frozen=True)
class UnreadableFile:
    """What a reader's ``read`` returns for a file it recognises but cannot load; its ``get_data`` raises ``error``.

    Attributes:
        path: the file or folder.
        error: the reader's exception, whose message names the file and the problem.
    """

    path: str
    error: Exception


def read_or_defer(load: Callable[[], _Image], path: str | os.PathLike) -> _Image | UnreadableFile:
    """``load()``, or an :class:`UnreadableFile` holding the exception it raised."""
    try:
        return load()
    except Exception as err:  # every failure of a recognised file must reach the caller, not LoadImage's fallback
        return UnreadableFile(str(path), err)


def raise_deferred(images: Any) -> None:
    """Raise the error of the first :class:`UnreadableFile` in ``images`` (one image or a sequence); else nothing."""
    for image in ensure_tuple(images):
        if isinstance(image, UnreadableFile):
            raise image.error
