"""The pretrained encoder with its QA head, loaded in fp32 from the Hub, a folder or an alias (backbone.py),
and an exported ONNX model behind the same interface (onnx_runtime.py)."""
