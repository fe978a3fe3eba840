"""Layouts of Python containers still read, no longer written (the native ones live in
csrc/include/ebgc/legacy/)."""


def saved_coder_id(coder_id: int) -> int:
    """Encoder states saved when "context" wrote the serial layout (coder 3) continue with its
    lane layout (coder 4), which is what "context" means now."""
    return 4 if coder_id == 3 else coder_id
