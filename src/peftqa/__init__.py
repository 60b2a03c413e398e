"""peftqa: parameter-efficient fine-tuning of encoders for extractive QA on SQuAD v1.1."""

__version__ = "0.1.0"
