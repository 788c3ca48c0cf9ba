"""Rich progress bars on stderr, or nothing with --quiet."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ibcli.console import stderr  # noqa: F401  (re-exported: stages import it from here)


def make_progress(quiet: bool, transient: bool = False) -> Progress:
    """Bars on stderr; `quiet` disables them, `transient` erases them when done (used with --json).

    Descriptions and the info field are printed literally (no rich markup), like every message.
    """
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}", markup=False),
        console=stderr, disable=quiet, transient=transient,
    )


class TrainProgress:
    """Epoch and batch bars for the training loop; the batch bar goes once the last epoch is done."""

    def __init__(self, progress: Progress):
        self.p = progress
        self.epochs = self.batches = None
        self.total = 0

    def start(self, epochs: int, steps_per_epoch: int, done: int) -> None:
        self.total = epochs
        self.epochs = self.p.add_task("epochs", total=epochs, completed=done, info="")
        self.batches = self.p.add_task("batches", total=steps_per_epoch, info="")

    def batch(self, b: int) -> None:
        self.p.update(self.batches, completed=b)

    def epoch(self, epoch: int, metrics: dict) -> None:
        info = f"test acc {metrics.get('test_accuracy', float('nan')):.4f}  loss {metrics.get('train_loss', float('nan')):.4f}"
        self.p.update(self.epochs, completed=epoch, info=info)
        if epoch >= self.total:
            # No stale "batches 0/469" left on screen after the last epoch.
            self.p.remove_task(self.batches)
        else:
            self.p.reset(self.batches)
