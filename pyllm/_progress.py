"""Progress bars for long work: tqdm when it is installed (it is optional), else, where asked
for, a plain one-line bar on stderr."""
import sys
import time


class NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


class TextBar:
    """`desc: 12/32 [###.....] 3.1 s` rewritten in place on stderr."""

    def __init__(self, total, desc):
        self.total, self.desc, self.done, self.start = max(total, 1), desc, 0, time.perf_counter()
        self._draw()

    def _draw(self, end=""):
        width = 30
        filled = width * self.done // self.total
        sys.stderr.write(f"\r{self.desc}: {self.done}/{self.total} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{time.perf_counter() - self.start:.1f} s{end}")
        sys.stderr.flush()

    def update(self, n=1):
        self.done = min(self.total, self.done + n)
        self._draw()

    def close(self):
        self._draw("\n")


def progress_bar(total, desc, show, text_fallback=False):
    """A bar for `total` steps when show is true: tqdm's, else a TextBar if text_fallback, else none."""
    from ._args import check_progress
    if not check_progress(show):
        return NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return TextBar(total, desc) if text_fallback else NoBar()
    return tqdm(total=total, desc=desc)
