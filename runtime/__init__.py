"""Inference runtime: read -> scale -> tile -> infer -> stitch -> measure -> write.

Importable without the trainer and without matplotlib/onnx; only what a lab
workstation needs to turn images into measured mitochondria.
"""
