"""What the benchmarks print: fixed-width tables and a progress bar (tqdm, when
installed) that rows are written above."""


class Table:
    """A fixed-width text table; columns are (title, width), a width of 0 meaning
    the title's. The first `names` columns (names) are left-aligned, the others
    (numbers) right-aligned."""

    def __init__(self, columns, names=1):
        self.widths = [max(len(title), width) for title, width in columns]
        self.titles = [title for title, _ in columns]
        self.names = names

    def header(self):
        line = self._line(self.titles)
        return f"{line}\n{'-' * len(line)}"

    def row(self, *cells):
        if len(cells) != len(self.widths):
            raise ValueError(f"a row of {len(cells)} cells for {len(self.widths)} columns")
        return self._line(["" if cell is None else str(cell) for cell in cells])

    def _line(self, cells):
        return " ".join(f"{c:<{w}}" if i < self.names else f"{c:>{w}}"
                        for i, (c, w) in enumerate(zip(cells, self.widths))).rstrip()


class _NoBar:
    def update(self, n=1):
        pass

    def write(self, text):
        print(text)

    def close(self):
        pass


class _Bar:
    def __init__(self, bar):
        self.bar = bar

    def update(self, n=1):
        self.bar.update(n)

    def write(self, text):
        self.bar.write(text)        # above the bar, which stays at the bottom

    def close(self):
        self.bar.close()


def progress(total, enabled, unit="case"):
    """A bar over `total` steps (tqdm) with write(); without tqdm, or disabled,
    write() prints and the rest does nothing."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return _Bar(tqdm(total=total, desc="benchmarking", unit=unit, leave=False))


def ms(seconds):
    """Milliseconds for a table cell, four or five significant digits; '' for none."""
    if seconds is None:
        return ""
    value = seconds * 1e3
    digits = 4 if value < 1 else 3 if value < 10 else 2 if value < 100 else 1
    return f"{value:.{digits}f}"


def ratio(value, digits=2):
    return "" if value is None else f"{value:.{digits}f}"
