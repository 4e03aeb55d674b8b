"""The pipeline: `Pipeline` (thin), `sources.resolve` (ONE resolver of model sources), conditioning
modes, codecs (VAE / pixels), text and image encoders, and the call surface (vdrt's and diffusers' names).
"""
from vdrt.pipeline.outputs import PipelineOutput
from vdrt.pipeline.pipeline import Pipeline

__all__ = ["Pipeline", "PipelineOutput"]
