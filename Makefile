# omnifs - GNU make build.
#
#   make              build libomni, omnifs, omni-exec and omni-agent in build/
#   make test         install what the tests need, build, run every test
#   make demo         install what the demo needs, build, run the main job
#   make asan         the whole test suite under ASan + UBSan (build-asan/)
#   make install      PREFIX=/usr/local DESTDIR= ; make uninstall
#   make man          the man pages (scdoc; part of make when scdoc is there)
#   make format | format-check (clang-format, banned calls) | clean
#
# CFLAGS is yours (default -O2 -g); required flags live in OMNI_CFLAGS so
# "make CFLAGS=-O0" keeps them. V=1 echoes commands. WERROR=1 (or CI=true)
# turns warnings into errors.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
CC ?= cc
PKG_CONFIG ?= pkg-config
SCDOC ?= scdoc
CFLAGS ?= -O2 -g
BUILD ?= build

Q := $(if $(V),,@)

WARNINGS := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wformat=2 -Wvla -Wpedantic -Wno-format-nonliteral
ifneq ($(filter 1 true,$(WERROR) $(CI)),)
WARNINGS += -Werror
endif

SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=all
ifeq ($(SAN),1)
EXTRA_FLAGS := $(SAN_FLAGS)
endif

LIB_PKGS := libcurl libcjson libgit2 libarchive libcrypto sqlite3
FS_PKGS := fuse3
TEST_PKGS := criterion

pkg_cflags = $(shell $(PKG_CONFIG) --cflags $(1) 2>/dev/null)
pkg_libs = $(shell $(PKG_CONFIG) --libs $(1) 2>/dev/null)

OMNI_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -D_FILE_OFFSET_BITS=64 \
	-pthread -MMD -MP -Ibackends/include -Ibackends $(WARNINGS) \
	$(EXTRA_FLAGS)
FS_DEFS := -DFUSE_USE_VERSION=312

# Sources are found by folder. backends/base/ is libc only: omni-agent
# (static, inside containers of any image) and omni-exec (started for every
# command: 1 ms, no libcurl, libgit2 or OpenSSL) link it alone, as
# libomni-base.a; libomni.a holds every part.
BASE_SRCS := $(sort $(wildcard backends/base/*.c))
LIB_SRCS := $(BASE_SRCS) $(sort $(filter-out $(BASE_SRCS),$(wildcard backends/*/*.c)))
FS_SRCS := $(filter-out fs/main.c,$(sort $(wildcard fs/*.c)))
# exec/agent*.c make omni-agent (static), the rest omni-exec.
AGENT_SRCS := $(sort $(wildcard exec/agent*.c))
EXEC_SRCS := $(filter-out exec/main.c $(AGENT_SRCS),$(sort $(wildcard exec/*.c)))
TEST_SRCS := $(sort $(filter-out tests/bench/% tests/example/%,$(wildcard tests/*/*.c)))

LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
PIC_OBJS := $(LIB_SRCS:%.c=$(BUILD)/pic/%.o)
FS_OBJS := $(FS_SRCS:%.c=$(BUILD)/obj/%.o)
EXEC_OBJS := $(EXEC_SRCS:%.c=$(BUILD)/obj/%.o)
TEST_OBJS := $(TEST_SRCS:%.c=$(BUILD)/obj/%.o)
BASE_OBJS := $(BASE_SRCS:%.c=$(BUILD)/obj/%.o)
AGENT_OBJS := $(AGENT_SRCS:%.c=$(BUILD)/agent/%.o)
AGENT_BASE_OBJS := $(BASE_SRCS:%.c=$(BUILD)/agent/%.o)

LIB := $(BUILD)/libomni.a
# The shared library: version from omni.h, soname libomni.so.MAJOR.
VERSION := $(shell sed -n 's/^\#define OMNI_VERSION "\(.*\)"/\1/p' \
	backends/include/omni/omni.h)
SO_MAJOR := $(firstword $(subst ., ,$(VERSION)))
SONAME := libomni.so.$(SO_MAJOR)
SO_LIB := $(BUILD)/libomni.so.$(VERSION)
SO_LINKS := $(BUILD)/$(SONAME) $(BUILD)/libomni.so
# Only omni_* (not omni__*) leaves libomni.so: see backends/libomni.map.
SO_MAP := backends/libomni.map
PC_FILE := $(BUILD)/omni.pc
BASE_LIB := $(BUILD)/libomni-base.a
AGENT_BASE_LIB := $(BUILD)/agent/libomni-base.a
OMNIFS := $(BUILD)/omnifs
OMNI_EXEC := $(BUILD)/omni-exec
OMNI_AGENT := $(BUILD)/omni-agent
TEST_BIN := $(BUILD)/omni-tests

LIB_LIBS := $(call pkg_libs,$(LIB_PKGS)) -pthread
FS_LIBS := $(call pkg_libs,$(FS_PKGS))

PROGRAMS := $(OMNIFS) $(OMNI_EXEC)
ifneq ($(wildcard exec/agent.c),)
PROGRAMS += $(OMNI_AGENT)
endif

# Man pages: man/NAME.SECTION.scd -> $(BUILD)/man/NAME.SECTION, built by
# "make" when scdoc is installed (scripts/install-deps.sh installs it).
MAN_SRCS := $(sort $(wildcard man/*.scd))
MAN_PAGES := $(MAN_SRCS:man/%.scd=$(BUILD)/man/%)
HAVE_SCDOC := $(shell command -v $(SCDOC) 2>/dev/null)
COMPLETIONS := $(sort $(wildcard completions/*.bash))

.PHONY: all test check test-run demo asan install uninstall format \
	format-check clean deps man FORCE

all: $(LIB) $(BASE_LIB) $(SO_LIB) $(SO_LINKS) $(PC_FILE) $(PROGRAMS) \
	$(if $(HAVE_SCDOC),$(MAN_PAGES))

man: $(MAN_PAGES)

$(BUILD)/obj/backends/%.o: backends/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(OMNI_CFLAGS) $(call pkg_cflags,$(LIB_PKGS)) $(CFLAGS) -c $< -o $@

# The same sources again, position-independent, for libomni.so. Calls
# between its own functions need not go through the PLT: nothing is meant
# to interpose them.
$(BUILD)/pic/backends/%.o: backends/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $< (PIC)")
	$(Q)$(CC) $(OMNI_CFLAGS) -fPIC -fno-semantic-interposition \
		$(call pkg_cflags,$(LIB_PKGS)) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/fs/%.o: fs/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(OMNI_CFLAGS) $(FS_DEFS) $(call pkg_cflags,$(FS_PKGS)) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/exec/%.o: exec/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(OMNI_CFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(OMNI_CFLAGS) $(FS_DEFS) -Itests/support -Ifs -Iexec $(call pkg_cflags,$(LIB_PKGS) $(FS_PKGS) $(TEST_PKGS)) $(CFLAGS) -c $< -o $@

# omni-agent runs inside containers of any image: static, libc only, and
# never sanitized (the sanitizer runtimes cannot be linked statically).
$(BUILD)/agent/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $< (static)")
	$(Q)$(CC) -std=c11 -D_POSIX_C_SOURCE=200809L -pthread -MMD -MP \
		-Ibackends/include -Ibackends $(WARNINGS) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(SO_LIB): $(PIC_OBJS) $(SO_MAP)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=$(SO_MAP) \
		-Wl,--no-undefined $(OMNI_CFLAGS) $(CFLAGS) $(LDFLAGS) \
		-o $@ $(PIC_OBJS) $(LIB_LIBS)

$(SO_LINKS): | $(SO_LIB)
	$(Q)ln -sf $(if $(filter %/$(SONAME),$@),$(notdir $(SO_LIB)),$(SONAME)) $@

# omni.pc is rewritten only when its text changes (PREFIX, LIBDIR, ...).
# The static library's dependencies are Libs.private, as this build links
# them, not Requires.private: "pkg-config --static" would then pull in the
# private libraries of libcurl (nghttp2, rtmp, ldap, ...), whose static
# archives Debian does not ship, while libomni.a needs only these.
PC_LIBDIR := $(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))
PC_INCLUDEDIR := $(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))
$(PC_FILE): FORCE
	@mkdir -p $(dir $@)
	$(Q)printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(PC_LIBDIR)' \
		'includedir=$(PC_INCLUDEDIR)' '' 'Name: omni' \
		'Description: libomni: sandbox sessions (local, docker, e2b) and state managers' \
		'Version: $(VERSION)' 'Cflags: -I$${includedir}' \
		'Libs: -L$${libdir} -lomni' 'Libs.private: $(strip $(LIB_LIBS))' \
		>$@.tmp
	$(Q)if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

$(BUILD)/man/%: man/%.scd
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  SCDOC   $<")
	$(Q)$(SCDOC) <$< >$@.tmp && mv $@.tmp $@

$(BASE_LIB): $(BASE_OBJS)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(AGENT_BASE_LIB): $(AGENT_BASE_OBJS)
	@$(if $(Q),echo "  AR      $@ (static)")
	$(Q)rm -f $@ && ar rcs $@ $^

$(OMNIFS): $(BUILD)/obj/fs/main.o $(FS_OBJS) $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(OMNI_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(FS_LIBS) $(LIB_LIBS)

$(OMNI_EXEC): $(BUILD)/obj/exec/main.o $(EXEC_OBJS) $(BASE_LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(OMNI_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ -pthread

$(OMNI_AGENT): $(AGENT_OBJS) $(AGENT_BASE_LIB)
	@$(if $(Q),echo "  LD      $@ (static)")
	$(Q)$(CC) -static -pthread $(CFLAGS) $(LDFLAGS) -o $@ $^

$(TEST_BIN): $(TEST_OBJS) $(FS_OBJS) $(EXEC_OBJS) $(LIB) | $(PROGRAMS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(OMNI_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(FS_LIBS) $(LIB_LIBS) $(call pkg_libs,$(TEST_PKGS))

# --- the README's two commands ------------------------------------------------

deps:
	$(Q)scripts/install-deps.sh

# Install what is missing, build, run every test (unit, integration,
# conformance of the test servers), stop what was started.
test: deps
	$(Q)$(MAKE) --no-print-directory all $(TEST_BIN)
	$(Q)$(MAKE) --no-print-directory format-check
	$(Q)BUILD=$(BUILD) scripts/run-tests.sh

check: test

# Run the tests against an existing build (no apt-get).
test-run: all $(TEST_BIN)
	$(Q)BUILD=$(BUILD) scripts/run-tests.sh

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)BUILD=$(BUILD) scripts/demo.sh

asan: deps
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan SAN=1 test-run

# --- installation ---------------------------------------------------------------

# Programs, both libraries, the headers, omni.pc, the man pages (when
# scdoc made them) and the bash completions.
install: all
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(LIBDIR)" \
		"$(DESTDIR)$(INCLUDEDIR)/omni/sys" "$(DESTDIR)$(PKGCONFIGDIR)" \
		"$(DESTDIR)$(BASHCOMPDIR)"
	install -m 0755 $(PROGRAMS) "$(DESTDIR)$(BINDIR)"
	install -m 0644 $(LIB) "$(DESTDIR)$(LIBDIR)"
	install -m 0755 $(SO_LIB) "$(DESTDIR)$(LIBDIR)"
	ln -sf $(notdir $(SO_LIB)) "$(DESTDIR)$(LIBDIR)/$(SONAME)"
	ln -sf $(SONAME) "$(DESTDIR)$(LIBDIR)/libomni.so"
	install -m 0644 $(PC_FILE) "$(DESTDIR)$(PKGCONFIGDIR)"
	install -m 0644 backends/include/omni/*.h "$(DESTDIR)$(INCLUDEDIR)/omni"
	install -m 0644 backends/include/omni/sys/*.h "$(DESTDIR)$(INCLUDEDIR)/omni/sys"
	for c in $(COMPLETIONS); do \
		install -m 0644 "$$c" "$(DESTDIR)$(BASHCOMPDIR)/$$(basename "$$c" .bash)" || exit 1; \
	done
ifneq ($(HAVE_SCDOC),)
	for m in $(MAN_PAGES); do \
		d="$(DESTDIR)$(MANDIR)/man$${m##*.}"; \
		install -d "$$d" && install -m 0644 "$$m" "$$d" || exit 1; \
	done
else
	@echo "install: scdoc not found, man pages not installed" >&2
endif

uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/omnifs" "$(DESTDIR)$(BINDIR)/omni-exec" \
		"$(DESTDIR)$(BINDIR)/omni-agent" "$(DESTDIR)$(LIBDIR)/libomni.a" \
		"$(DESTDIR)$(LIBDIR)/$(notdir $(SO_LIB))" \
		"$(DESTDIR)$(LIBDIR)/$(SONAME)" "$(DESTDIR)$(LIBDIR)/libomni.so" \
		"$(DESTDIR)$(PKGCONFIGDIR)/omni.pc"
	rm -f $(foreach c,$(COMPLETIONS),"$(DESTDIR)$(BASHCOMPDIR)/$(basename $(notdir $(c)))")
	rm -f $(foreach m,$(MAN_SRCS:man/%.scd=%),"$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(m)")
	rm -rf "$(DESTDIR)$(INCLUDEDIR)/omni"

# --- formatting -------------------------------------------------------------------

FORMAT_FILES = $(wildcard backends/*/*.c backends/*/*.h \
	backends/include/omni/*.h backends/include/omni/sys/*.h \
	fs/*.c fs/*.h exec/*.c exec/*.h \
	$(filter-out tests/example/%,$(wildcard tests/*/*.c tests/*/*.h)))

format:
	clang-format -i $(FORMAT_FILES)

format-check:
	clang-format --dry-run -Werror $(FORMAT_FILES)
	$(Q)scripts/check-banned-calls.sh

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
