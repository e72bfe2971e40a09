"""The wattlab console (Textual): `wattlab` with no arguments opens it (see main.run_console).

It talks to the rest of wattlab only through `wattlab.sessions` (queries, spool tail, sweep files,
the detached runner) and light catalog modules; it never imports torch, vllm, llama_cpp, pynvml
or jtop. Meters are read by a monitor child process or by the runner, never by the console.
"""
