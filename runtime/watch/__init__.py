"""`mito-watch`: turn every image written into a folder into `mito-run` results, exactly once.

The journal (SQLite, WAL) is the single source of truth about which input
was processed from which content; the per-image records written by the
pipeline are the results; the tables are rebuilt from the records. So any
crash leaves a state a restart can finish without losing or doubling a file.
"""
