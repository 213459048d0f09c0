"""Retrievers: one protocol (`search(queries, k) -> {qid: {docid: score}}`) and a registry by name."""
