"""Text front ends for the embedded model: a closed-vocabulary word tokenizer."""
from vdrt.text.word_tokenizer import DEFAULT, WordTokenizer, default_tokenizer

__all__ = ["DEFAULT", "WordTokenizer", "default_tokenizer"]
