"""Local stand-ins for drill, tests and benchmarks (never shipped in a function)."""
