# pg_statemachine: build, install and test against any PostgreSQL's pg_config.
#
#   make install                      build (release) and install into $(PG_CONFIG)'s directories
#   make install PG_CONFIG=/usr/lib/postgresql/16/bin/pg_config PG_MAJOR=16
#   make package                      a tarball of the installed files (cargo pgrx package), in dist/
#   make test                         the whole suite (scripts/test; the same command CI runs)
#   make check-majors                 type-check against PostgreSQL 13-18 headers (scripts/check-majors)
#   make docs                         regenerate docs/reference.md and docs/img (needs a running cluster)
#
# The PostgreSQL major must match a cargo feature (pg13 ... pg18); PG_MAJOR defaults to the
# one pg_config reports. cargo-pgrx must know that pg_config once: make pgrx-init.

PG_CONFIG ?= $(shell command -v pg_config || echo /usr/lib/postgresql/15/bin/pg_config)
PG_MAJOR  ?= $(shell $(PG_CONFIG) --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
CARGO_PGRX_FLAGS = --package pg_statemachine --pg-config $(PG_CONFIG) --no-default-features --features pg$(PG_MAJOR)
VERSION   = $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

.PHONY: all install package pgrx-init test docs check-majors clean

all:
	cargo build --release --package pg_statemachine --no-default-features --features pg$(PG_MAJOR)

pgrx-init:
	cargo pgrx init --pg$(PG_MAJOR) $(PG_CONFIG)

install:
	cargo pgrx install --release $(CARGO_PGRX_FLAGS)

package:
	cargo pgrx package $(CARGO_PGRX_FLAGS) --out-dir dist/pg_statemachine-$(VERSION)-pg$(PG_MAJOR)
	tar -C dist/pg_statemachine-$(VERSION)-pg$(PG_MAJOR) -czf dist/pg_statemachine-$(VERSION)-pg$(PG_MAJOR).tar.gz .
	@echo "dist/pg_statemachine-$(VERSION)-pg$(PG_MAJOR).tar.gz: install with tar -C / -xzf on a machine with the same PostgreSQL build"

test:
	bash scripts/test

check-majors:
	bash scripts/check-majors

docs:
	bash scripts/reference
	bash scripts/diagrams

clean:
	cargo clean
	rm -rf dist
