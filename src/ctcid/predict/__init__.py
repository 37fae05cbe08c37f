"""Applying a trained model to cells."""

from __future__ import annotations

from .infer import autocast_dtype, bundle_logits, infer_logits, resolve_device

__all__ = ["autocast_dtype", "bundle_logits", "infer_logits", "resolve_device"]
