"""A run's settings as typed dataclasses (run_config.py): the flags, presets and run.json all come from them."""
