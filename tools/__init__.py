"""The template repository's own tools (not part of what it generates)."""
