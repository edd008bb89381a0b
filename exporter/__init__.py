"""vastai-exporter: a Prometheus exporter for Vast.ai Serverless workers."""

__version__ = "0.1.0"
