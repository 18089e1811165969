"""How library functions report long work, without a UI of their own.

Every long-running library function takes `progress`:

- False (the default): silent;
- True: tqdm progress bars and one-line notes on stderr;
- a callable: progress bars on stderr, and each note (a str) passed to it: the CLI passes its
  own printer, a notebook can pass `print` or a logger's method.

Notes are what a person watching would want to know ("uploading 3 shards ...", "generating with
the embedded model ..."); results and errors are returned or raised, never printed.
"""

from __future__ import annotations

import sys
from typing import Callable, Union

ProgressArg = Union[bool, Callable[[str], None], None]


class Reporter:
    """The `progress` argument, resolved: `note(message)` and `bar(...)`."""

    def __init__(self, progress: ProgressArg = False):
        self.enabled = bool(progress)
        self._note = progress if callable(progress) else (_to_stderr if progress else None)

    def note(self, message: str) -> None:
        if self._note is not None:
            self._note(message)

    def bar(self, **options):
        """A tqdm bar on stderr, disabled when progress is off."""
        from tqdm import tqdm

        return tqdm(disable=not self.enabled, file=sys.stderr, **options)


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
