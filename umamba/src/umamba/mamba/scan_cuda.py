"""mamba-ssm's compiled selective-scan kernel, loaded lazily (placeholder)."""


def is_available() -> bool:
    return False
