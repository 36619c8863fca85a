"""mitotally in napari: open EM images and mito-run results at scale, segment, inspect, correct, and train on the corrections.

The plugin is a thin layer over the runtime, which knows nothing of it (dependencies point one way:
plugin -> runtime). It reads through `runtime.image_io`, segments and measures through
`runtime.pipeline` (`segment_image`, `measure_plane`, `process_segmented`, `run`), writes through
`runtime.writers`, and trains by running `mito-train` as a subprocess, so it imports nothing from
`trainer/` or `export/` and the viewer stays responsive.

Modules: `layers` (runtime types <-> napari layer data: scale, units, features), `reader` (the npe2
reader), `segmenting` (a cancellable, progress-reporting segmenter for one image or a folder),
`export` (a result -> mito-run's output contract), `training_set` (a corrected result -> a folder
`mito-train --data` reads), `finetune` (the `mito-train --init` subprocess), and the Qt widgets
(`segment_widget`, `batch_widget`, `objects_table`, `model_form`).

Scale convention: napari layers get `scale` in µm per pixel, (y, x), with `units` µm, as Fiji shows
calibrated images (Image > Properties) and as objects.csv's *_um columns are; the exact calibration in
nm and its source stay in the layer's `metadata["mitotally"]`.
"""
