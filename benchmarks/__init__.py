"""Benchmarks that print figures beside a plain Hugging Face Trainer baseline (`make bench`)."""
