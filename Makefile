# libvdisk: one Makefile for the library, the tools, the tests and the demo.
# `make demo` and `make check` install missing Debian packages first.

PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR ?= $(PREFIX)/lib
INCDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
PKGDIR ?= $(LIBDIR)/pkgconfig

CC ?= cc
B ?= build
SAN ?=
VERSION := 0.1.0
SOVER := 0

WARN := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CPPFLAGS += -D_GNU_SOURCE -Iinclude -Ilibvdisk
OPT ?= -O2 -g
CFLAGS += $(WARN) $(OPT) -fPIC -fvisibility=hidden $(SAN)
LDFLAGS += $(SAN)

JSON_CFLAGS := $(shell pkg-config --cflags jansson 2>/dev/null)
JSON_LIBS := $(shell pkg-config --libs jansson 2>/dev/null || echo -ljansson)
CRIT_LIBS := $(shell pkg-config --libs criterion 2>/dev/null || echo -lcriterion)
# The io_uring and libaio engines (libvdisk/io/uring.c, aio.c).
ENGINE_LIBS := -luring -laio

LIB_SRC := $(sort $(wildcard libvdisk/*.c libvdisk/io/*.c libvdisk/vhd/*.c libvdisk/avhd/*.c libvdisk/merge/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(B)/%.o)
TOOL_SRC := $(sort $(wildcard tools/vhdtool/*.c))
TOOL_OBJ := $(TOOL_SRC:%.c=$(B)/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/unit/%)
HDRS := $(wildcard include/vdisk/*.h libvdisk/*.h libvdisk/*/*.h tools/vhdtool/*.h tests/unit/*.h)

.PHONY: all deps demo check check-fast check-asan unit install uninstall clean bench format fuzz

all: $(B)/libvdisk.so.$(SOVER) $(B)/libvdisk.a $(B)/vhdtool $(B)/libvdisk.pc

deps:
	@./scripts/install-deps.sh

$(B)/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	@$(CC) $(CPPFLAGS) $(CFLAGS) $(JSON_CFLAGS) -c $< -o $@

$(B)/libvdisk.a: $(LIB_OBJ)
	@rm -f $@
	@echo "  AR      $@"
	@ar rcs $@ $^

$(B)/libvdisk.so.$(SOVER): $(LIB_OBJ) libvdisk/libvdisk.map
	@echo "  LD      $@"
	@$(CC) -shared -Wl,-soname,libvdisk.so.$(SOVER) -Wl,--version-script=libvdisk/libvdisk.map \
		-Wl,--no-undefined $(LDFLAGS) -o $@ $(LIB_OBJ) $(ENGINE_LIBS)
	@ln -sf libvdisk.so.$(SOVER) $(B)/libvdisk.so

# The tool links the static library so it runs from the build tree unchanged.
$(B)/vhdtool: $(TOOL_OBJ) $(B)/libvdisk.a
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $(TOOL_OBJ) $(VDFS_LIBS) $(B)/libvdisk.a $(JSON_LIBS) $(ENGINE_LIBS) -lm

# ---- Recovery mount (issue 8): fuse/libvdfs.a (partitions, LVM2, file systems
# through The Sleuth Kit) used by vhdtool ls/extract, and the FUSE3 tool vhdmount.
VDFS_SRC := $(filter-out fuse/vhdmount.c,$(sort $(wildcard fuse/*.c)))
VDFS_OBJ := $(VDFS_SRC:%.c=$(B)/%.o)
TSK_LIBS := $(shell pkg-config --libs tsk 2>/dev/null || echo -ltsk)
FUSE_CFLAGS := $(shell pkg-config --cflags fuse3 2>/dev/null)
FUSE_LIBS := $(shell pkg-config --libs fuse3 2>/dev/null || echo -lfuse3)
VDFS_LIBS = $(B)/libvdfs.a $(TSK_LIBS) -lpthread

all: $(B)/vhdmount
$(B)/vhdtool: $(B)/libvdfs.a
$(TOOL_OBJ) $(VDFS_OBJ) $(B)/fuse/vhdmount.o: $(wildcard fuse/*.h)
$(B)/fuse/vhdmount.o: CFLAGS += $(FUSE_CFLAGS)

$(B)/libvdfs.a: $(VDFS_OBJ)
	@rm -f $@
	@echo "  AR      $@"
	@ar rcs $@ $^

$(B)/vhdmount: $(B)/fuse/vhdmount.o $(B)/libvdfs.a $(B)/libvdisk.a
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $(B)/fuse/vhdmount.o $(VDFS_LIBS) $(B)/libvdisk.a $(FUSE_LIBS) \
		$(ENGINE_LIBS) -lm
# ---- end of the recovery mount block

# The copy under build/ is for inspection; install writes one for its own PREFIX.
$(B)/libvdisk.pc: libvdisk.pc.in
	@sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCDIR@|$(INCDIR)|; s|@VERSION@|$(VERSION)|' $< > $@

# Unit tests link the static library, so internal codecs are reachable.
$(B)/tests/unit/%: tests/unit/%.c $(B)/libvdisk.a $(HDRS)
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	@$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(B)/libvdisk.a $(CRIT_LIBS) $(ENGINE_LIBS) $(LDFLAGS)

# Crash and fault simulation driver (tests/crash/crash.sh runs it).
$(B)/tests/crash/crashsim: tests/crash/crashsim.c $(B)/libvdisk.a $(HDRS)
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	@$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(B)/libvdisk.a $(ENGINE_LIBS) $(LDFLAGS)

unit: $(UNIT_BIN) $(B)/tests/crash/crashsim $(B)/bench/vdbench

demo: deps
	@$(MAKE) --no-print-directory all
	@./scripts/demo.sh $(B)/vhdtool

# The whole suite: normal build, then ASan+UBSan build of unit and image tests.
check: deps
	@$(MAKE) --no-print-directory all unit
	@$(MAKE) --no-print-directory B=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
		SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" $(addprefix build-asan/,vhdtool) \
		$(UNIT_BIN:$(B)/%=build-asan/%) build-asan/tests/crash/crashsim
	@./tests/run.sh

# libFuzzer targets, FUZZ_SECONDS each (default 60); see tests/fuzz/README.md.
fuzz: deps
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-60} ./tests/fuzz/run.sh

bench: deps
	@$(MAKE) --no-print-directory all $(B)/bench/vdbench
	@B=$(B) ./bench/run.sh

$(B)/bench/vdbench: bench/vdbench.c $(B)/libvdisk.a
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	@$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(B)/libvdisk.a $(ENGINE_LIBS) -lpthread $(LDFLAGS)

install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR)/vdisk $(DESTDIR)$(BINDIR) $(DESTDIR)$(PKGDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 644 $(B)/libvdisk.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(B)/libvdisk.so.$(SOVER) $(DESTDIR)$(LIBDIR)/
	ln -sf libvdisk.so.$(SOVER) $(DESTDIR)$(LIBDIR)/libvdisk.so
	install -m 644 include/vdisk/vdisk.h $(DESTDIR)$(INCDIR)/vdisk/
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCDIR@|$(INCDIR)|; s|@VERSION@|$(VERSION)|' \
		libvdisk.pc.in > $(DESTDIR)$(PKGDIR)/libvdisk.pc
	install -m 755 $(B)/vhdtool $(DESTDIR)$(BINDIR)/
	install -m 644 man/vhdtool.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 755 $(B)/vhdmount $(DESTDIR)$(BINDIR)/
	install -m 644 man/vhdmount.1 $(DESTDIR)$(MANDIR)/man1/

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libvdisk.a $(DESTDIR)$(LIBDIR)/libvdisk.so $(DESTDIR)$(LIBDIR)/libvdisk.so.$(SOVER) \
		$(DESTDIR)$(INCDIR)/vdisk/vdisk.h $(DESTDIR)$(PKGDIR)/libvdisk.pc $(DESTDIR)$(BINDIR)/vhdtool \
		$(DESTDIR)$(MANDIR)/man1/vhdtool.1 $(DESTDIR)$(BINDIR)/vhdmount $(DESTDIR)$(MANDIR)/man1/vhdmount.1

format:
	clang-format -i $(LIB_SRC) $(TOOL_SRC) $(UNIT_SRC) $(HDRS) tests/fuzz/*.c tests/fuzz/*.h \
		tests/crash/*.c bench/*.c

clean:
	rm -rf build build-asan build-fuzz
