"""Building blocks of tools/convert_models.py (GGUF / safetensors -> ONNX model folders)."""
