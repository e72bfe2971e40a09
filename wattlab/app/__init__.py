"""The wattlab console (Textual): `wattlab` with no arguments opens it (see main.run_console).

It reads through `wattlab.analysis` (queries, the SQL box, Pareto), follows runs through
`wattlab.sessions` (live tail, sweep files, the detached runner, the preflight) and uses light
catalog modules (engine specs, tasks); it never imports torch, vllm, llama_cpp, pynvml or jtop.
Meters are read by a monitor child process or by the runner, never by the console.
"""
