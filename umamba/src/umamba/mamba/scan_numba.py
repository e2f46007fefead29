"""CPU inference fast path (placeholder until measured)."""


def is_available() -> bool:
    return False
