"""What every stage shares: model shapes and FLOPs, the torch model, checkpoint I/O, tokenizer, image
preprocessing, bundle manifest, shards, batched embedding, the evaluation harness, worker pools and
the version. It imports no stage.

Every module here but `model` and `checkpoint` is torch-free (tests/test_layout.py checks it).
"""
