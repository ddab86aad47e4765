"""rotator: rotates Adobe OAuth Server-to-Server client secrets through AWS Secrets Manager."""

__version__ = "0.1.0"
