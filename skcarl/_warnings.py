"""Warnings that point at the user's line, however many frames of skcarl and scikit-learn sit in between.

A hand-counted ``stacklevel`` breaks as soon as a wrapper adds a frame: scikit-learn's ``set_output`` wraps
``transform``, a ``Pipeline`` or ``cross_validate`` calls ``fit``, joblib runs the folds. :func:`warn` skips
every frame whose file lies in skcarl, scikit-learn or joblib, so the warning is attributed to the first line
outside them: the line of the user's code that made the call.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings


def _folder(module_file: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(module_file)), "")


@functools.cache
def _library_folders() -> tuple[str, ...]:
    import joblib
    import sklearn

    return (_folder(__file__), _folder(sklearn.__file__), _folder(joblib.__file__))


def _inside(filename: str, folders: tuple[str, ...]) -> bool:
    return filename.startswith(folders) or (not os.path.isabs(filename)
                                            and os.path.abspath(filename).startswith(folders))


def user_stacklevel(folders: tuple[str, ...] | None = None) -> int:
    """The ``stacklevel`` of the first frame outside ``folders`` (skcarl, scikit-learn, joblib), as seen by a
    ``warnings.warn`` called from the function that calls this one.

    Examples
    --------
    >>> from skcarl._warnings import user_stacklevel
    >>> user_stacklevel() >= 1
    True
    """
    folders = _library_folders() if folders is None else folders
    frame = sys._getframe(1)  # the function that will call warnings.warn: stacklevel 1
    level = 1
    while frame is not None and _inside(frame.f_code.co_filename, folders):
        frame = frame.f_back
        level += 1
    return level


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first frame outside skcarl, scikit-learn and joblib.

    Examples
    --------
    >>> import warnings
    >>> from skcarl._warnings import warn
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn("careful")
    >>> caught[0].filename.startswith("<doctest")                  # this example's line, not skcarl's
    True
    """
    folders = _library_folders()
    if sys.version_info >= (3, 12):
        warnings.warn(message, category, skip_file_prefixes=folders)
    else:
        warnings.warn(message, category, stacklevel=user_stacklevel(folders))
