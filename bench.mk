# Benchmarks (issue 6): `make bench` runs every benchmark against real parts (anvil, SQLite,
# CometBFT), prints one table and writes bench/results.json; see bench/README.md.
# `make bench-quick` is the scaled-down smoke run. Include from the Makefile (needs $(BIN)).
.PHONY: bench bench-quick
bench: install
	$(BIN)/python -m bench

bench-quick: install
	$(BIN)/python -m bench --quick
