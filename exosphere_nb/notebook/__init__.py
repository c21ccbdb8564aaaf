"""The notebook surface: %exo magics, live widgets, renderers (imported only by %load_ext)."""
