"""Reading a folder that may come from anywhere: only regular files inside it, only JSON of a sane size and depth.

:func:`check_folder` runs before any file of a saved model is opened: a named pipe would block the first
``open`` forever, a symbolic link could make the model read a file outside its folder, a folder where a file
belongs gives an ``IsADirectoryError``. :func:`read_json` bounds what a JSON file may cost: its size (a huge
file would exhaust memory) and its nesting (the parser and the decoder recurse, so a file nested 100,000 levels
deep would raise ``RecursionError``). Both raise the ``error`` class they are given, naming the file.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

# A saved model's config.json holds parameters, fitted attributes (classes, VA points, history) and metadata:
# kilobytes, or a few megabytes for tens of thousands of classes.
MAX_JSON_BYTES = 64 * 1024 * 1024
# Tokenizer files are read by transformers, whole: a tokenizer.json is megabytes, even for large vocabularies.
MAX_TOKENIZER_FILE_BYTES = 512 * 1024 * 1024
# Nesting of a saved config: about 6 levels, metadata included; far below Python's recursion limit.
MAX_JSON_DEPTH = 100


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a file")):
        if test(mode):
            return name
    return "not a regular file"


def check_folder(folder: Path, error: type[Exception], *, files=(), folders=()) -> None:
    """Raise ``error`` unless every entry of ``folder`` (hidden ones, which are never read, aside) is a regular
    file or a folder, a symbolic link points inside ``folder``, and ``files``/``folders`` (names relative to
    ``folder``) are a regular file / a folder."""
    root = folder.resolve()
    expected = {**{name: "a file" for name in files}, **{name: "a folder" for name in folders}}
    for here, subfolders, names in os.walk(folder):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in [*subfolders, *names]:
            if name.startswith("."):
                continue
            entry = Path(here) / name
            relative = entry.relative_to(folder).as_posix()
            try:
                mode = os.lstat(entry).st_mode
                if stat.S_ISLNK(mode):
                    target = entry.resolve()
                    if target != root and root not in target.parents:
                        raise error(f"{entry} is a symbolic link to {target}, outside the model folder {folder}; "
                                    "a model folder is read only from its own files.")
                    mode = os.stat(entry).st_mode
            except OSError as exc:
                raise error(f"{entry} cannot be read: {type(exc).__name__}: {exc}") from None
            kind = _kind(mode)
            if kind not in ("a file", "a folder"):
                raise error(f"{entry} is {kind}, not a regular file; a model folder holds only files and folders.")
            if relative in expected and kind != expected[relative]:
                raise error(f"{entry} is {kind} where {expected[relative]} belongs.")


def check_sizes(folder: Path, limit: int, error: type[Exception]) -> None:
    """Raise ``error`` for a file under ``folder`` larger than ``limit`` bytes (read whole, it would exhaust memory)."""
    for here, _, names in os.walk(folder):
        for name in names:
            size = os.stat(Path(here) / name).st_size
            if size > limit:
                raise error(f"{Path(here) / name} is {size:,} bytes, more than the {limit:,} a tokenizer file of a "
                            "saved model may hold.")


def read_json(file: Path, error: type[Exception]):
    """The JSON value in ``file``; ``error`` for a file too large, too deeply nested, not UTF-8 or not JSON."""
    try:
        size = os.stat(file).st_size
        if size > MAX_JSON_BYTES:
            raise error(f"{file} is {size:,} bytes, more than the {MAX_JSON_BYTES:,} a saved model's JSON file may "
                        "hold; it is not a file that skcarl wrote.")
        with open(file, encoding="utf-8") as f:
            value = json.load(f)
    except (UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, error):
            raise
        raise error(f"{file} is not valid JSON: {exc}") from None
    except (RecursionError, MemoryError):
        raise error(f"{file} is nested too deeply (or too large) to be a saved model's JSON file.") from None
    if _depth_exceeds(value, MAX_JSON_DEPTH):
        raise error(f"{file} is nested more than {MAX_JSON_DEPTH} levels deep; a saved model's JSON file is not.")
    return value


def _depth_exceeds(value, limit: int) -> bool:
    """Whether lists and objects nest deeper than ``limit`` (without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False
