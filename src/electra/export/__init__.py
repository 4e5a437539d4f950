"""Exporting models for deployment: ONNX (+ int8) in :mod:`electra.export.onnx` (``electra export --format onnx``).
The Hugging Face format lives in :mod:`electra.interop.hf`."""
