"""Rich progress bars on stderr, or nothing with --quiet."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

stderr = Console(stderr=True)


def make_progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
        console=stderr, disable=quiet, transient=False,
    )


class TrainProgress:
    """Epoch and batch bars for the training loop."""

    def __init__(self, progress: Progress):
        self.p = progress
        self.epochs = self.batches = None

    def start(self, epochs: int, steps_per_epoch: int, done: int) -> None:
        self.epochs = self.p.add_task("epochs", total=epochs, completed=done, info="")
        self.batches = self.p.add_task("batches", total=steps_per_epoch, info="")

    def batch(self, b: int) -> None:
        self.p.update(self.batches, completed=b)

    def epoch(self, epoch: int, metrics: dict) -> None:
        info = f"test acc {metrics.get('test_accuracy', float('nan')):.4f}  loss {metrics.get('train_loss', float('nan')):.4f}"
        self.p.update(self.epochs, completed=epoch, info=info)
        self.p.reset(self.batches)
