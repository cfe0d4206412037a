"""The benchmark harness: PiNI against its baselines under the CoOp protocol, with the
paper's own numbers (Tables 2, 3, 4, 7) as data. CLI: `pini_core.bench.cli`."""
