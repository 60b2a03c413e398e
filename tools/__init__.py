"""Scripts that maintain the repository (generated documentation pages, the constraints file)."""
