"""rich progress for training: loss terms, lr, it/s and ETA on one line."""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainProgress:
    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False)
        self.task = None

    def __enter__(self) -> "TrainProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, row: dict) -> None:
        total = row.get("total_steps")
        if row.get("time_budget") and not total:
            total, done = row["time_budget"], row["elapsed_s"]
        else:
            done = row["step"]
        if self.task is None:
            self.task = self.progress.add_task("train", total=total, info="")
        rate = row["step"] / max(row["elapsed_s"], 1e-9)
        info = (f"loss {row['loss']:.3f} (mask {row['loss_mask']:.3f} cls {row['loss_classifier']:.3f} "
                f"box {row['loss_box_reg']:.3f} rpn {row['loss_objectness']:.3f}) lr {row['lr']:.1e} {rate:.2f} it/s")
        self.progress.update(self.task, completed=done, total=total, info=info)

    def print(self, message: str) -> None:
        self.progress.console.print(message)
