"""Distillation stage: the training config (torch-free), teacher embedding cache, ACID/ACED selection
and losses, training loop, recipes.

Built on `siglip2_sdk.core` only.
"""
