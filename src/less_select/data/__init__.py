"""Reading instruction data (formats, provenance) and encoding it into token ids with loss masks."""

from .example import Example
from .formats import LoadReport, load_examples

__all__ = ["Example", "LoadReport", "load_examples"]
