"""rich progress for training: loss terms, lr, it/s and ETA on one line.

In a log file (not a terminal, e.g. a background run under nohup) rich draws nothing until the end,
so a plain line is printed every `LOG_EVERY_S` seconds instead.
"""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


LOG_EVERY_S = 60.0


class TrainProgress:
    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False)
        self.task = None
        self._last_line_at = None

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
        if not self.console.is_terminal and (self._last_line_at is None or row["elapsed_s"] - self._last_line_at >= LOG_EVERY_S):
            self._last_line_at = row["elapsed_s"]
            budget = f" of {total / 60:.0f} min" if row.get("time_budget") and not row.get("total_steps") else ""
            self.console.print(f"step {row['step']}{f'/{total}' if row.get('total_steps') else ''}, "
                               f"{row['elapsed_s'] / 60:.1f} min trained{budget}: {info}")

    def print(self, message: str) -> None:
        self.progress.console.print(message)
