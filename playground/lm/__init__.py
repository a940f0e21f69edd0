"""The language-model wing: loading, adapters, the decoder, the realignment engine and its scheduler.

Float32 batch invariance needs MKL's strict conditional numerical reproducibility: without it an MKL
matmul inside torch's CPU attention gives a row different bits depending on which thread computes it
(measured here: the same row differs alone vs. in a batch of 2). MKL reads MKL_CBWR once, at its first
call, so it is set here, before this wing imports torch; set MKL_CBWR yourself to override it.
"""
import os

os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
