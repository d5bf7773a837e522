# dxhub — build, test, bench, fuzz, demo.
# `make` builds build/dxhub; `make test SAN=1` runs the suite under ASan+UBSan.

DEBIAN_PACKAGES := build-essential pkg-config clang libclang-rt-14-dev \
	libdcmtk-dev dcmtk libturbojpeg0-dev libcharls-dev libopenjp2-7-dev \
	libopenjph-dev openjph-tools libzmq3-dev libczmq-dev liblmdb-dev lmdb-utils \
	libssl-dev openssl libmicrohttpd-dev libjansson-dev zlib1g-dev libzstd-dev \
	libxml2-dev libcmocka-dev python3-pytest python3-pydicom python3-numpy \
	python3-zmq python3-gdcm python3-pil python3-prometheus-client wrk hyperfine orthanc orthanc-dicomweb flac python3-biosig \
	libsndfile1-dev libgdcm-tools grokj2k-tools python3-pytest-xdist \
	libsodium-dev libpango1.0-dev libcairo2-dev fonts-wqy-microhei poppler-utils libinih-dev chromium \
	faketime

PY      := /usr/bin/python3
# Every core by default (a fresh clone's build is a third of `make test`);
# an explicit -jN on the command line wins.
ifeq ($(filter -j%,$(MAKEFLAGS)),)
MAKEFLAGS += -j$(shell nproc)
endif
SAN     ?= 0
ifeq ($(SAN),1)
BUILD   ?= build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD   ?= build
SANFLAGS :=
endif

PKGS    := zlib libturbojpeg charls libopenjp2 openjph libzmq lmdb libcrypto libssl \
	libmicrohttpd jansson libzstd libxml-2.0 dcmtk pangocairo cairo-pdf inih
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CC      ?= cc
CXX     ?= c++
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter \
           -Werror=incompatible-pointer-types -Werror=implicit-function-declaration -Werror=int-conversion \
           -Werror=return-type
# -fPIC: the same objects make the static library (tests, benches) and dxhub-roles.so.
CFLAGS  := -std=c11 -D_GNU_SOURCE -O2 -g -fPIC $(WARN) $(SANFLAGS) -I.
CXXFLAGS:= -std=c++17 -D_GNU_SOURCE -O2 -g -fPIC -Wall -Wextra -Wno-unused-parameter $(SANFLAGS) -I. $(PKG_CFLAGS)
LDFLAGS := $(SANFLAGS)
# Debian's openjph.pc has an empty Libs: line (0.9.0-3), so name the library here.
LDLIBS  := $(PKG_LIBS) -lopenjph -lstdc++ -lpthread -lm

# Modules: every .c/.cc file in a module folder belongs to it (add a file, no Makefile edit).
MODULES := codecs worklist hub viewer
define module_objs
$(patsubst %.c,$(BUILD)/%.o,$(wildcard $(1)/*.c)) $(patsubst %.cc,$(BUILD)/%.o,$(wildcard $(1)/*.cc))
endef
CODECS_OBJS   := $(call module_objs,codecs)
WORKLIST_OBJS := $(call module_objs,worklist)
HUB_OBJS      := $(filter-out $(BUILD)/hub/main.o,$(call module_objs,hub))
VIEWER_OBJS   := $(call module_objs,viewer)
LIB_OBJS      := $(VIEWER_OBJS) $(HUB_OBJS) $(WORKLIST_OBJS) $(CODECS_OBJS)
LIB           := $(BUILD)/libdxhub.a
ROLES         := $(BUILD)/dxhub-roles.so
# transcode, render and ecg: the codecs and what those commands use, no more
# (hub/main.c: loading dxhub-roles.so cost a small transcode four times its work).
PIXELS_OBJS   := $(CODECS_OBJS) $(addprefix $(BUILD)/hub/,cmd_pixel.o cmd_ecg.o cmd_ecg_measure.o triage.o cmd_util.o)
PIXELS        := $(BUILD)/dxhub-pixels.so

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
BENCH_SRCS := $(wildcard bench/bench_*.c)
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))
FUZZ_REPLAY := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/replay_%,$(FUZZ_SRCS))

.PHONY: all deps node-deps test unit e2e bench fuzz fuzz-smoke demo clean lint install config-reference
all: $(BUILD)/dxhub

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@
$(BUILD)/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# build/dxhub holds what `dxhub dump` needs (libc, zlib) and loads
# dxhub-pixels.so or dxhub-roles.so, built beside it, for every other
# command (hub/main.c).
$(BUILD)/dxhub: $(BUILD)/hub/main.o $(LIB) $(ROLES) $(PIXELS)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) -lz -ldl

$(ROLES): $(LIB_OBJS)
	$(CXX) -shared -Wl,-Bsymbolic -Wl,--as-needed $(LDFLAGS) -o $@ $(LIB_OBJS) $(LDLIBS)

$(PIXELS): $(PIXELS_OBJS)
	$(CXX) -shared -Wl,-Bsymbolic -Wl,--as-needed -Wl,--no-undefined $(LDFLAGS) -o $@ $(PIXELS_OBJS) $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS) -lcmocka

# Fuzz targets: a plain-C replayer (always) and a libFuzzer build (make fuzz, clang).
$(BUILD)/fuzz/replay_%: tests/fuzz/%.c tests/fuzz/replay_main.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< tests/fuzz/replay_main.c $(LIB) $(LDFLAGS) $(LDLIBS)

# The worklist bench's simulated readers speak ZMTP with CURVE themselves
# (bench/zmtp_curve.h says why), with libsodium as libzmq does.
$(BUILD)/bench/bench_worklist: bench/bench_worklist.c bench/zmtp_curve.c bench/zmtp_curve.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< bench/zmtp_curve.c $(LIB) $(LDFLAGS) $(LDLIBS) -lsodium

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)

deps:
	@echo "make deps: installing the Debian packages dxhub builds, tests and demos with:"
	@echo "  $(DEBIAN_PACKAGES)"
	@if dpkg-query -W -f='$${Status}\n' $(DEBIAN_PACKAGES) 2>/dev/null | grep -qv 'install ok installed' \
	    || [ $$(dpkg-query -W $(DEBIAN_PACKAGES) 2>/dev/null | wc -l) -lt $(words $(DEBIAN_PACKAGES)) ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES); \
	else echo "  all present, nothing to install"; fi
	@$(MAKE) --no-print-directory node-deps

# Browser tests drive Debian's chromium (DEBIAN_PACKAGES) through
# playwright-core, pinned by tests/browser/package-lock.json; npm ci never
# downloads a browser (playwright-core has none to download).
node-deps:
	@if [ -f tests/browser/package-lock.json ] && { [ ! -f tests/browser/node_modules/.package-lock.json ] || [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; }; then \
		echo "make deps: npm ci in tests/browser (playwright-core)"; \
		cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent; fi

test: $(BUILD)/dxhub $(UNIT_BINS) $(FUZZ_REPLAY) $(BUILD)/bench/bench_worklist
	@BUILD=$(BUILD) PY=$(PY) SAN=$(SAN) tests/run-all

unit: $(UNIT_BINS)
	@for t in $(UNIT_BINS); do $$t || exit 1; done

fuzz: $(LIB)
	@BUILD=$(BUILD) tests/fuzz/run-libfuzzer $(FUZZ_SRCS)

bench: $(BUILD)/dxhub $(BENCH_BINS)
	@BUILD=$(BUILD) PY=$(PY) bench/run-all

demo: deps $(BUILD)/dxhub
	@BUILD=$(BUILD) PY=$(PY) samples/demo

lint:
	@tests/lint

# README's configuration reference, from the option tables (a test checks it).
config-reference: $(BUILD)/dxhub
	$(PY) docs/config_reference.py $(BUILD)/dxhub README.md

# make install [PREFIX=/usr/local] [DESTDIR=staging]: the binary, the viewer's
# web files, example configs (also as PREFIX/etc/dxhub/*.ini when none is
# there yet: an upgrade never overwrites an operator's settings), systemd
# units and the dxhub system user (sysusers.d).
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
DATADIR    ?= $(PREFIX)/share
DOCDIR     ?= $(DATADIR)/doc/dxhub
SYSCONFDIR ?= $(PREFIX)/etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR?= $(PREFIX)/lib/sysusers.d
UNITS      := dxhub-serve dxhub-edge dxhub-workstation dxhub-clinic-page
install: $(BUILD)/dxhub
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)/dxhub/web $(DESTDIR)$(DATADIR)/dxhub/examples \
		$(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/dxhub $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR)
	install -m 0755 $(BUILD)/dxhub $(DESTDIR)$(BINDIR)/dxhub
	install -d $(DESTDIR)$(BINDIR)/../lib/dxhub
	install -m 0644 $(ROLES) $(DESTDIR)$(BINDIR)/../lib/dxhub/dxhub-roles.so
	install -m 0644 $(PIXELS) $(DESTDIR)$(BINDIR)/../lib/dxhub/dxhub-pixels.so
	if [ -d viewer/web ]; then cp -R viewer/web/. $(DESTDIR)$(DATADIR)/dxhub/web/ && \
		chmod -R u=rwX,go=rX $(DESTDIR)$(DATADIR)/dxhub/web; fi
	install -m 0644 samples/config/*.ini $(DESTDIR)$(DATADIR)/dxhub/examples/
	for f in samples/config/*.ini; do t=$(DESTDIR)$(SYSCONFDIR)/dxhub/$${f##*/}; \
		[ -e "$$t" ] || install -m 0644 "$$f" "$$t"; done
	install -m 0644 README.md ARCHITECTURE.md $(DESTDIR)$(DOCDIR)/
	for u in $(UNITS); do sed -e 's|@BINDIR@|$(BINDIR)|g; s|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		-e 's|@DATADIR@|$(DATADIR)|g; s|@DOCDIR@|$(DOCDIR)|g' samples/systemd/$$u.service.in \
		> $(DESTDIR)$(UNITDIR)/$$u.service && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u.service; done
	install -m 0644 samples/systemd/dxhub.sysusers $(DESTDIR)$(SYSUSERSDIR)/dxhub.conf
	@echo "installed under $(DESTDIR)$(PREFIX); as root: systemd-sysusers && systemctl daemon-reload &&" \
		"systemctl enable --now dxhub-serve (or dxhub-edge)"

clean:
	rm -rf build var

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
