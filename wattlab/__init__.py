"""wattlab: measure what LLM inference costs in energy, time and quality.

Importing this package is cheap on purpose: no torch, vllm, llama_cpp, pynvml or jtop is
imported until a command actually needs an engine or a meter (a test checks this).
"""

__version__ = "0.1.0"
