"""RAG (reserved layer, empty for now): loaders, chunking, embedder, index, retriever, answers
with citations. A sibling of ``engine``: the two never import each other (see pyproject's
import-linter contracts and docs/architecture.md)."""
