"""The floor: errors, cache paths and atomic writes, books and references, Bible corpora, Nave's reader, query sets.

Everything else (retrievers/, encoder/, harness/) may import this package; it imports none of them.
"""
