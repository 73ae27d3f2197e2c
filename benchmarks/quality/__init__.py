"""Selection-quality benchmark on real data: planted target-task examples in real pools."""
