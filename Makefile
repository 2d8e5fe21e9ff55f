# memscope: build, test, bench, demo, install.
#
#   make            the release libraries (target/release/libmemscope.so, libmemscope_locks.so) and CLI
#   make deps       installs what the tests need (Debian, as root; run by make test)
#   make test       everything: lint, Rust unit tests, C tests under the
#                   preload, stats and memscope-stat, install, real programs
#                   and real daemons under the preload, demo, bench harness
#   make test ONLY=noreclaim   one group of C tests (c-tests/run --list), after
#                   building; ONLY="noreclaim seccomp_noreclaim": one test;
#                   ONLY=e2e: the real daemons
#   make demo       a storage daemon with scopes off and on: tails, lock holds, stats
#   make e2e        memcached, redis and postgres under the preload
#   make bench      every allocator side by side (bench/; about 2 min a round, 3 rounds); rewrites the
#                   current table at the top of docs/BENCHMARKS.md and docs/latency-ccdf.svg
#   make install    PREFIX=/usr/local (DESTDIR honoured); make uninstall

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man

CARGO ?= cargo
BUILD := build
LIB := target/release/libmemscope.so
LOCKS_LIB := target/release/libmemscope_locks.so
CLI := target/release/memscope-stat
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
MAJOR := $(firstword $(subst ., ,$(VERSION)))

.PHONY: all deps test lint unit-test c-test demo-smoke e2e e2e-quick rust-guard-test install-test bench-smoke demo bench install uninstall clean

all: $(LIB) $(CLI)

# cargo decides what is stale; these targets always ask it.
.PHONY: $(LIB) $(CLI)
# MEMSCOPE_LIBDIR: where `memscope-stat run` looks for the installed library.
$(LIB) $(CLI):
	MEMSCOPE_LIBDIR=$(LIBDIR) $(CARGO) build --release --workspace

# The C tests: c-tests/run GROUP|all [TEST...] (groups: c-tests/run --list).
C_TESTS = c-tests/run --lib $(LIB) --cli $(CLI) --out $(BUILD)/c-tests
ONLY ?=

ifeq ($(strip $(ONLY)),)
test: deps all lint unit-test c-test rust-guard-test e2e-quick demo-smoke bench-smoke
	@echo "make test: all suites passed"
else
# ONLY=e2e: the real daemons (memcached, redis, postgres), as make test runs them.
test: deps all
	$(if $(filter e2e,$(ONLY)),$(MAKE) --no-print-directory e2e-quick)
	$(if $(filter-out e2e,$(ONLY)),$(C_TESTS) $(filter-out e2e,$(ONLY)))
	@echo "make test ONLY=$(ONLY): passed"
endif

# What the tests need on a fresh Debian machine (apt-get as root).
deps:
	scripts/deps.sh

lint:
	scripts/layers.py shim/src
	scripts/passdown.py shim/src
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet
	# Every published crate packages (readme, licence, versioned path
	# dependencies); `cargo publish --workspace --dry-run --exclude kvd-rs`
	# also builds each package alone (minutes: run by hand before a release).
	$(CARGO) package --workspace --exclude kvd-rs --no-verify --allow-dirty --quiet

unit-test:
	$(CARGO) test --release --workspace

# Every group of C tests under the preload: drop-in malloc (with real
# programs), scopes, NORECLAIM, NOFAIL (with cgroups: each part the machine
# cannot host is skipped with a line saying why), stats and memscope-stat
# (with heap profiles), install.
c-test: all
	$(C_TESTS) all

# The Rust crate: memscope linked in as the global allocator (NORECLAIM
# under a seccomp filter, alignment), its guards and reclaimers, the
# bypass warning; then the same tests preloaded, where the crate forwards
# to the library. Its doc examples run in unit-test.
rust-guard-test: $(LIB)
	$(CARGO) test --release -p memscope --tests
	LD_PRELOAD=$(CURDIR)/$(LIB) EXPECT_MEMSCOPE_LOADED=1 $(CARGO) test --release -p memscope --tests

# Install into a scratch prefix and check the layout (SONAME, links,
# stripped, a .pc per prefix), programs built with pkg-config against it
# and run linked (not preloaded: scopes must be live), man pages,
# completions, the systemd drop-in, uninstall: the C tests' install group
# (c-tests/install/run.sh), also run by c-test.
install-test: all
	$(C_TESTS) install

# The storage daemon with scopes off and on, and its Rust variant, under
# the same load (examples/).
demo: all
	examples/demo.sh $(LIB) $(CLI) target/release/kvd-rs

# memcached, redis and postgres under the preload, driven by their own
# clients (e2e/real-daemons.sh); e2e-quick is the bounded run in make test.
e2e: all
	e2e/real-daemons.sh $(LIB) $(CLI) $(BUILD)/e2e

e2e-quick: all
	e2e/real-daemons.sh $(LIB) $(CLI) $(BUILD)/e2e --quick

# The demo, small: both daemons start, answer correctly, report, and shut
# down cleanly.
demo-smoke: all
	DEMO_OPS=3000 examples/demo.sh $(LIB) $(CLI) target/release/kvd-rs

# The results also replace the current table of docs/BENCHMARKS.md (between
# its markers; the dated investigations below them are left as they are).
bench: all
	bench/run.sh $(LIB) --rounds 3 --plot docs/latency-ccdf.svg --doc docs/BENCHMARKS.md

# Seconds long: proves the harness still runs; its numbers mean nothing, so
# the current table goes into a copy of docs/BENCHMARKS.md, and
# bench/check_doc.py checks the copy changed between the markers and nowhere else.
bench-smoke: all
	mkdir -p $(BUILD)/bench
	cp docs/BENCHMARKS.md $(BUILD)/bench/BENCHMARKS.md
	bench/run.sh $(LIB) --quick --rounds 1 --doc $(BUILD)/bench/BENCHMARKS.md
	bench/check_doc.py docs/BENCHMARKS.md $(BUILD)/bench/BENCHMARKS.md

# Made on every install, for the PREFIX/LIBDIR of that install.
.PHONY: memscope.pc $(BUILD)/memscope.conf $(BUILD)/man
memscope.pc: memscope.pc.in
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|; s|@VERSION@|$(VERSION)|' $< >$@

# The systemd drop-in (examples/systemd/), with this install's paths.
$(BUILD)/memscope.conf: examples/systemd/memscope.conf.in
	mkdir -p $(BUILD)
	sed -e 's|@LIBDIR@|$(LIBDIR)|g; s|@BINDIR@|$(BINDIR)|g; s|@DATADIR@|$(DATADIR)|g; s|@MAJOR@|$(MAJOR)|g' $< >$@

# Manual pages and shell completions, generated from memscope-stat itself.
$(BUILD)/man: $(CLI)
	rm -rf $@ && mkdir -p $@/man1 $@/completions
	$(CLI) man $@/man1 >/dev/null
	$(CLI) completions bash >$@/completions/memscope-stat
	$(CLI) completions zsh >$@/completions/_memscope-stat
	$(CLI) completions fish >$@/completions/memscope-stat.fish

# The library is installed stripped (its debug information stays in
# target/release for debugging a build tree), with its SONAME links.
install: all memscope.pc $(BUILD)/memscope.conf $(BUILD)/man
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(PKGCONFIGDIR) \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DATADIR)/memscope/systemd \
	    $(DESTDIR)$(DATADIR)/bash-completion/completions $(DESTDIR)$(DATADIR)/zsh/site-functions \
	    $(DESTDIR)$(DATADIR)/fish/vendor_completions.d
	install -m 0755 -s $(LIB) $(DESTDIR)$(LIBDIR)/libmemscope.so.$(VERSION)
	ln -sf libmemscope.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libmemscope.so.$(MAJOR)
	ln -sf libmemscope.so.$(MAJOR) $(DESTDIR)$(LIBDIR)/libmemscope.so
	install -m 0755 -s $(LOCKS_LIB) $(DESTDIR)$(LIBDIR)/libmemscope_locks.so
	install -m 0644 ffi-include/memscope.h $(DESTDIR)$(INCLUDEDIR)/memscope.h
	install -m 0644 ffi-include/memscope_stats.h $(DESTDIR)$(INCLUDEDIR)/memscope_stats.h
	install -m 0755 $(CLI) $(DESTDIR)$(BINDIR)/memscope-stat
	install -m 0644 memscope.pc $(DESTDIR)$(PKGCONFIGDIR)/memscope.pc
	install -m 0644 $(BUILD)/man/man1/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(BUILD)/memscope.conf $(DESTDIR)$(DATADIR)/memscope/systemd/memscope.conf
	install -m 0644 $(BUILD)/man/completions/memscope-stat $(DESTDIR)$(DATADIR)/bash-completion/completions/memscope-stat
	install -m 0644 $(BUILD)/man/completions/_memscope-stat $(DESTDIR)$(DATADIR)/zsh/site-functions/_memscope-stat
	install -m 0644 $(BUILD)/man/completions/memscope-stat.fish $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/memscope-stat.fish

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libmemscope.so $(DESTDIR)$(LIBDIR)/libmemscope.so.$(MAJOR) \
	      $(DESTDIR)$(LIBDIR)/libmemscope.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libmemscope_locks.so \
	      $(DESTDIR)$(INCLUDEDIR)/memscope.h \
	      $(DESTDIR)$(INCLUDEDIR)/memscope_stats.h \
	      $(DESTDIR)$(BINDIR)/memscope-stat $(DESTDIR)$(PKGCONFIGDIR)/memscope.pc \
	      $(DESTDIR)$(MANDIR)/man1/memscope-stat*.1 $(DESTDIR)$(DATADIR)/memscope/systemd/memscope.conf \
	      $(DESTDIR)$(DATADIR)/bash-completion/completions/memscope-stat \
	      $(DESTDIR)$(DATADIR)/zsh/site-functions/_memscope-stat \
	      $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/memscope-stat.fish

clean:
	$(CARGO) clean
	rm -rf $(BUILD) memscope.pc
