"""Benchmarks behind `umamba bench BENCHMARK` (scan, layer, train_step, predict): scripts that print JSON lines
and a table; speed targets are measured with them and written to BENCHMARKS.md, never asserted in tests."""
