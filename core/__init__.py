"""What every stage shares: model definition, checkpoint I/O, tokenizer, image preprocessing, bundle
manifest.

Importing this package (and its torch-free modules: config, errors, tokenizer, preprocess, bundle,
hub, assets) never imports torch; `model` and `checkpoint` do.
"""
