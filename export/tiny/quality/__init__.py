"""Ground-truth quality checks for the procedural clips: an analytic detector and frame metrics."""
from vdrt.export.tiny.quality.detector import Detection, detect, evaluate, score
from vdrt.export.tiny.quality.metrics import centroid_error, forecast_metrics, psnr, ssim, temporal_consistency

__all__ = [
    "Detection", "detect", "evaluate", "score",
    "centroid_error", "forecast_metrics", "psnr", "ssim", "temporal_consistency",
]
