"""The offline demo corpus: real multilingual image-text pairs from what package managers ship,
written as WebDataset shards (img2dataset layout) with a generated data card."""
