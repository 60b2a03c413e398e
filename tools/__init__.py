"""Scripts that maintain the repository (generated documentation pages, the constraints file) and turn
studies into tables (`python -m tools.study_table STUDY`, `python -m tools.compare_studies A B`); not benchmarks."""
