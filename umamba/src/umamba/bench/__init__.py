"""Benchmarks behind `umamba bench BENCHMARK` (scan, layer, train_step, predict) and what they share (harness:
timing, the side-by-side loop, output; arms: the kernel arms of the GPU comparisons). Speed targets are measured
with them and written to BENCHMARKS.md, never asserted in tests."""
