#!/usr/bin/env python3
"""Write malformed VHD images into OUTDIR for tests/cli/badinput.sh, with OUTDIR/cases.tsv.

Every image derives from a valid disk built here from the spec (docs/VHD-FORMAT.md):
footer, dynamic header, BAT, sector bitmaps, locators, with their checksums. Nothing is
committed: the images are made at test time. Each mutation of a field recomputes the
checksum of the structure it touches unless the case is about that checksum, so an image
is wrong in one way only.

cases.tsv columns (tab-separated, one case a line, header line first):
  name      file name in OUTDIR
  class     what vhdtool must do (see CLASSES)
  keyword   extended regex (case-insensitive) the error line / a warning must match
  sha256    SHA-256 of the whole virtual disk when it must open, else -
  size      virtual size in bytes when it must open, else -
  family    dyn4k | dyn2m | fixed | diff (diff cases depend on differencing support)
  what      one line saying what is wrong
"""
import hashlib
import os
import random
import struct
import sys
import uuid

SECTOR = 512
ALL_ONES = 0xFFFFFFFFFFFFFFFF
VHD_EPOCH = 946684800
TIMESTAMP = 0x2E8C1A00  # a fixed creation time (2024), so the output is reproducible

CLASSES = {
    "ok": "valid control: exit 0, no warning, content exact, check exits 0",
    "T": "tolerated: exit 0 (a warning is allowed), content exact where given",
    "W": "tolerated with a warning: exit 0 and a warning matching keyword",
    "E": "refused: exit 2, one stderr line naming the file and matching keyword",
    "EW": "either E or W (the spec leaves the choice to the library)",
    "R": "no VHD cookie left anywhere: exit 2 naming keyword, or opened as format raw",
    "A": "anything but a crash: exit 0 or 2 (one stderr line when 2)",
    "C": "opens (exit 0, a warning allowed, content exact) but check must report it (exit 1, keyword)",
}

# ---------------------------------------------------------------- codecs


def checksum(buf, off):
    """One's complement of the byte sum, the 4-byte field at OFF counted as zero."""
    total = sum(buf) - sum(buf[off:off + 4])
    return (~total) & 0xFFFFFFFF


def fix_checksum(buf, off):
    struct.pack_into(">I", buf, off, checksum(buf, off))


def chs(size):
    """Spec appendix geometry for SIZE bytes."""
    n = min(size // SECTOR, 65535 * 16 * 255)
    if n >= 65535 * 16 * 63:
        s, h = 255, 16
        ch = n // s
    else:
        s = 17
        ch = n // s
        h = max(4, (ch + 1023) // 1024)
        if ch >= h * 1024 or h > 16:
            s, h = 31, 16
            ch = n // s
        if ch >= h * 1024:
            s, h = 63, 16
            ch = n // s
    return ch // h, h, s


def footer(disk_type, size, data_offset, uid, creator=b"win "):
    f = bytearray(512)
    c, h, s = chs(size)
    f[0:8] = b"conectix"
    struct.pack_into(">IIQI", f, 8, 2, 0x00010000, data_offset, TIMESTAMP)
    f[28:32] = creator
    struct.pack_into(">I", f, 32, 0x000A0000)
    f[36:40] = b"Wi2k"
    struct.pack_into(">QQHBBI", f, 40, size, size, c, h, s, disk_type)
    f[68:84] = uid
    fix_checksum(f, 64)
    return f


def dynhdr(table_offset, entries, block_size, parent_uuid=bytes(16), parent_ts=0,
           parent_name="", locators=()):
    h = bytearray(1024)
    h[0:8] = b"cxsparse"
    struct.pack_into(">QQIII", h, 8, ALL_ONES, table_offset, 0x00010000, entries, block_size)
    h[40:56] = parent_uuid
    struct.pack_into(">I", h, 56, parent_ts)
    name = parent_name.encode("utf-16-be")
    h[64:64 + len(name)] = name
    for i, (code, space, length, offset) in enumerate(locators):
        struct.pack_into(">IIIIQ", h, 576 + 24 * i, code, space, length, 0, offset)
    fix_checksum(h, 36)
    return h


def bitmap_bytes(block_size):
    bits = block_size // SECTOR
    return ((bits + 7) // 8 + SECTOR - 1) // SECTOR * SECTOR


# ---------------------------------------------------------------- images


class Disk:
    """A VHD as bytes plus where each structure sits, so cases can patch fields."""

    def __init__(self, kind, data, size, virtual):
        self.kind = kind          # "fixed" | "dynamic" | "diff"
        self.data = bytearray(data)
        self.size = size
        self.virtual = virtual    # expected guest view (bytes)
        self.header = None
        self.bat = None
        self.entries = 0
        self.block_size = 0
        self.blocks = {}          # block index -> file offset of its bitmap
        self.locators = []        # file offsets of locator data

    def copy(self):
        d = Disk(self.kind, self.data, self.size, self.virtual)
        d.__dict__.update({k: v for k, v in self.__dict__.items() if k not in ("data",)})
        d.blocks = dict(self.blocks)
        d.data = bytearray(self.data)
        return d

    def sha(self):
        return hashlib.sha256(self.virtual).hexdigest()

    # footers: the copy at 0 (dynamic/diff) and the one at EOF-512
    def footer_offsets(self):
        end = len(self.data) - 512
        return [end] if self.kind == "fixed" else [0, end]

    def set_footer(self, off, fmt, *values, fix=True, which=None):
        for base in (which if which is not None else self.footer_offsets()):
            struct.pack_into(fmt, self.data, base + off, *values)
            if fix:
                ft = self.data[base:base + 512]
                fix_checksum(ft, 64)
                self.data[base:base + 512] = ft

    def set_footer_bytes(self, off, raw, fix=True, which=None):
        for base in (which if which is not None else self.footer_offsets()):
            self.data[base + off:base + off + len(raw)] = raw
            if fix:
                ft = self.data[base:base + 512]
                fix_checksum(ft, 64)
                self.data[base:base + 512] = ft

    def set_header(self, off, fmt, *values, fix=True):
        struct.pack_into(fmt, self.data, self.header + off, *values)
        if fix:
            self.fix_header()

    def fix_header(self):
        h = self.data[self.header:self.header + 1024]
        fix_checksum(h, 36)
        self.data[self.header:self.header + 1024] = h

    def set_bat(self, index, value):
        struct.pack_into(">I", self.data, self.bat + 4 * index, value)


def block_data(rng, block_size):
    return bytes(rng.getrandbits(8) for _ in range(block_size)) if block_size <= 8192 \
        else rng.randbytes(block_size)


def make_dynamic(size, block_size, stored, rng, uid, extra_after_bat=b"", kind="dynamic",
                 parent=None, sectors=None, creator=b"win "):
    """STORED: block indexes in their physical order. SECTORS: {block: [sector,...]} for
    partial bitmaps (differencing). PARENT: (parent_disk, name, locators-builder)."""
    entries = (size + block_size - 1) // block_size
    bat_bytes = (entries * 4 + SECTOR - 1) // SECTOR * SECTOR
    table_offset = 1536
    after_bat = table_offset + bat_bytes
    loc_off = after_bat
    first_block = after_bat + len(extra_after_bat)
    bm = bitmap_bytes(block_size)
    spb = block_size // SECTOR
    out = bytearray(first_block)
    out[after_bat:first_block] = extra_after_bat
    virtual = bytearray(parent[0].virtual) if parent else bytearray(size)
    offsets = {}
    for idx in stored:
        offsets[idx] = len(out)
        bitmap = bytearray(bm)
        data = bytearray(block_data(rng, block_size))
        wanted = sectors.get(idx) if sectors else None
        for k in range(spb):
            if wanted is None or k in wanted:
                bitmap[k >> 3] |= 0x80 >> (k & 7)
                lo = idx * block_size + k * SECTOR
                if lo < size:
                    virtual[lo:lo + SECTOR] = data[k * SECTOR:(k + 1) * SECTOR]
            else:
                data[k * SECTOR:(k + 1) * SECTOR] = bytes(SECTOR)
        out += bitmap + data
    disk_type = 4 if kind == "diff" else 3
    ft = footer(disk_type, size, 512, uid, creator)
    out[0:512] = ft
    if parent:
        pdisk, pname, locs = parent
        locators = []
        for code, raw in locs:
            locators.append((code, SECTOR, len(raw), loc_off))
            out[loc_off:loc_off + len(raw)] = raw
            loc_off += SECTOR
        pft = pdisk.data[-512:]
        hdr = dynhdr(table_offset, entries, block_size, bytes(pft[68:84]),
                     struct.unpack(">I", pft[24:28])[0], pname, locators)
    else:
        hdr = dynhdr(table_offset, entries, block_size)
    out[512:1536] = hdr
    bat = bytearray(b"\xff" * bat_bytes)
    for idx, off in offsets.items():
        struct.pack_into(">I", bat, 4 * idx, off // SECTOR)
    out[table_offset:table_offset + bat_bytes] = bat
    out += ft
    d = Disk("diff" if kind == "diff" else "dynamic", out, size, bytes(virtual[:size]))
    d.header, d.bat, d.entries, d.block_size, d.blocks = 512, table_offset, entries, block_size, offsets
    d.locators = [after_bat + SECTOR * i for i in range(len(parent[2]))] if parent else []
    return d


def make_fixed(size, rng, uid):
    data = bytearray(size)
    for start in range(0, size, 65536 * 3):  # some data, some zeros
        data[start:start + 65536] = rng.randbytes(min(65536, size - start))
    out = data + footer(2, size, ALL_ONES, uid)
    return Disk("fixed", out, size, bytes(data))


# ---------------------------------------------------------------- cases


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen-malformed.py OUTDIR")
    outdir = os.path.abspath(sys.argv[1])
    os.makedirs(outdir, exist_ok=True)
    rng = random.Random(20261130)
    uid = lambda: uuid.UUID(int=rng.getrandbits(128), version=4).bytes  # noqa: E731

    # 1 MiB in 256 blocks of 4 KiB (a two-sector BAT), blocks 0, 100, 17, 255 stored
    # in that physical order.
    dyn4k = make_dynamic(1 << 20, 4096, [0, 100, 17, 255], rng, uid())
    # 6 MiB in three 2 MiB blocks; block 2 stored before block 0, block 1 absent.
    dyn2m = make_dynamic(6 << 20, 2 << 20, [2, 0], rng, uid())
    fixed = make_fixed(1 << 20, rng, uid())
    # The differencing child of dyn4k (written as parent.vhd): block 0 holds sectors
    # 0-3 only, block 50 whole; W2ru ".\parent.vhd" and W2ku (absolute) locators.
    pname = "parent.vhd"
    w2ru = (0x57327275, ".\\parent.vhd".encode("utf-16-le"))
    w2ku = (0x57326B75, os.path.join(outdir, pname).encode("utf-16-le"))
    diff = make_dynamic(1 << 20, 4096, [0, 50], rng, uid(), extra_after_bat=bytes(1024),
                        kind="diff", parent=(dyn4k, pname, [w2ru, w2ku]),
                        sectors={0: [0, 1, 2, 3]})

    cases = []

    def add(name, cls, keyword, disk, what, content=True, raw=None):
        data = raw if raw is not None else disk.data
        sha = disk.sha() if content and cls in ("ok", "T", "W", "EW", "C") else "-"
        size = str(disk.size) if content and cls in ("ok", "T", "W", "EW", "C") else "-"
        family = {"fixed": "fixed", "diff": "diff"}.get(disk.kind,
                  "dyn2m" if disk.block_size == 2 << 20 else "dyn4k")
        cases.append((name + ".vhd", cls, keyword, sha, size, family, what, bytes(data)))

    def mut(base, fn):
        d = base.copy()
        fn(d)
        return d

    # ---- valid controls (the suite is worthless if these do not open exactly)
    add("ok-dyn4k", "ok", ".", dyn4k, "valid dynamic, 4 KiB blocks, stored out of order")
    add("ok-dyn2m", "ok", ".", dyn2m, "valid dynamic, 2 MiB blocks, block 2 stored first")
    add("ok-fixed", "ok", ".", fixed, "valid fixed 1 MiB")
    with open(os.path.join(outdir, pname), "wb") as fh:
        fh.write(dyn4k.data)
    os.utime(os.path.join(outdir, pname), (TIMESTAMP + VHD_EPOCH, TIMESTAMP + VHD_EPOCH))
    add("ok-diff", "ok", ".", diff, "valid differencing child of parent.vhd (partial bitmap)")

    # ---- truncation at many lengths (dyn4k: footer 0-512, header 512-1536, BAT 1536-2560,
    # blocks of 4608 bytes from 2560, end footer)
    n = len(dyn4k.data)
    for length, cls, kw, what in [
        (0, "A", "empty|footer|size|short|small|format", "empty file"),
        (7, "A", "footer|cookie|short|truncat|small|format", "7 bytes, cookie cut"),
        (100, "R", "footer|short|truncat|small", "100 bytes, inside the footer copy"),
        (511, "E", "header|footer|truncat|short|small", "511 bytes (the 511-byte footer rule finds the copy at 0)"),
        (512, "E", "header|data offset|truncat|short|end of file|EOF|past", "footer copy only"),
        (1000, "E", "header|data offset|truncat|short|end of file|EOF|past", "header cut"),
        (1536, "E", "BAT|table|truncat|short|end of file|EOF|past", "header complete, no BAT"),
        (2048, "E", "BAT|table|truncat|short|end of file|EOF|past", "first BAT sector only"),
        (2560, "E", "BAT|block|truncat|end of file|EOF|past", "BAT complete, no blocks"),
        (2560 + 100, "E", "BAT|block|truncat|end of file|EOF|past", "inside the first bitmap"),
        (2560 + 512, "E", "BAT|block|truncat|end of file|EOF|past", "first bitmap, no data"),
        (2560 + 2000, "E", "BAT|block|truncat|end of file|EOF|past", "inside the first block's data"),
        (2560 + 4608, "E", "BAT|block|truncat|end of file|EOF|past", "first block complete, the other three missing"),
        (n - 4608 - 512 + 1, "E", "BAT|block|truncat|end of file|EOF|past", "last block cut after one byte"),
        (n - 513, "E", "BAT|block|truncat|end of file|EOF|past", "last block short by one byte, no footer"),
    ]:
        add("trunc-%d" % length, cls, kw, dyn4k, what + " (dyn4k truncated to %d)" % length,
            raw=dyn4k.data[:length])
    add("trunc-nofooter", "W", "footer", dyn4k, "end footer missing: blocks intact, the copy at 0 is used",
        raw=dyn4k.data[:n - 512])
    add("trunc-511footer", "T", ".", dyn4k, "end footer cut to 511 bytes (pre-2004 Virtual PC footer)",
        raw=dyn4k.data[:n - 1])
    add("trunc-partfooter", "W", "footer", dyn4k, "end footer cut to 412 bytes: the copy at 0 is used",
        raw=dyn4k.data[:n - 100])
    n2 = len(dyn2m.data)
    for length, what in [(n2 // 2, "middle of the first stored block"),
                         (n2 - 512 - (1 << 20), "inside the last stored block")]:
        add("trunc2m-%d" % length, "E", "BAT|block|truncat|end of file|EOF|past", dyn2m,
            what + " (dyn2m truncated to %d)" % length, raw=dyn2m.data[:length])
    add("grown-garbage", "EW", "footer", dyn4k, "4 KiB of junk after the end footer",
        raw=dyn4k.data + bytes([0x5A]) * 4096)

    # ---- cookies
    add("cookie-footer-end", "W", "cookie|footer", mut(dyn4k, lambda d: d.set_footer_bytes(0, b"conectiX", which=[n - 512])),
        "end footer cookie wrong, copy at 0 good")
    add("cookie-footer-both", "R", "cookie|footer", mut(dyn4k, lambda d: d.set_footer_bytes(0, b"conectiX")),
        "footer cookie wrong in both copies")
    add("cookie-header", "E", "cookie|header|cxsparse", mut(dyn4k, lambda d: (d.data.__setitem__(slice(512, 520), b"cxsparsX"), d.fix_header())),
        "dynamic header cookie wrong")
    add("cookie-fixed", "R", "cookie|footer", mut(fixed, lambda d: d.set_footer_bytes(0, b"CONECTIX")),
        "fixed: the only footer's cookie wrong")

    # ---- checksums
    def bad_csum(which):
        return lambda d: d.set_footer(64, ">I", 0x12345678, fix=False, which=which)
    add("csum-footer-end", "W", "checksum", mut(dyn4k, bad_csum([n - 512])), "footer checksum wrong in the end copy only")
    add("csum-footer-copy0", "W", "checksum", mut(dyn4k, bad_csum([0])), "footer checksum wrong in the copy at 0 only")
    add("csum-footer-both", "EW", "checksum", mut(dyn4k, bad_csum(None)), "footer checksum wrong in both copies (cookie and fields sane)")
    add("csum-header", "E", "checksum", mut(dyn4k, lambda d: d.set_header(36, ">I", 0xDEADBEEF, fix=False)), "dynamic header checksum wrong")
    add("csum-fixed", "EW", "checksum", mut(fixed, bad_csum(None)), "fixed: the only footer's checksum wrong")
    add("footer-copies-differ", "W", "differ|copy|copies|mismatch|footer", mut(dyn4k, lambda d: d.set_footer_bytes(68, bytes(range(16)), which=[0])),
        "footer copy at 0 has another UUID (both checksums right)")

    # ---- BAT entries
    first = 2560 // SECTOR
    add("bat-past-eof", "E", "BAT|block", mut(dyn4k, lambda d: d.set_bat(17, 0x00100000)), "BAT[17] points 512 MiB into a 21 KiB file")
    add("bat-max", "E", "BAT|block", mut(dyn4k, lambda d: d.set_bat(17, 0xFFFFFFFE)), "BAT[17] = 0xFFFFFFFE (2 TiB)")
    add("bat-straddle-eof", "E", "BAT|block", mut(dyn4k, lambda d: d.set_bat(255, (n - 512) // SECTOR - 4)),
        "BAT[255] block runs past EOF")
    add("bat-on-footer", "E", "BAT|block|overlap|footer", mut(dyn4k, lambda d: d.set_bat(255, (n - 512) // SECTOR)), "BAT[255] at the end footer")
    add("bat-duplicate", "E", "BAT|block|overlap|duplicate", mut(dyn4k, lambda d: d.set_bat(17, first)), "BAT[17] == BAT[0]")
    add("bat-overlap", "E", "BAT|block|overlap", mut(dyn4k, lambda d: d.set_bat(17, first + 1)), "BAT[17] one sector into block 0")
    add("bat-on-footer-copy", "E", "BAT|block|overlap|footer|metadata", mut(dyn4k, lambda d: d.set_bat(3, 0)), "BAT[3] = sector 0 (the footer copy)")
    add("bat-on-header", "E", "BAT|block|overlap|header|metadata", mut(dyn4k, lambda d: d.set_bat(3, 1)), "BAT[3] = sector 1 (the header)")
    add("bat-on-bat", "E", "BAT|block|overlap|metadata", mut(dyn4k, lambda d: d.set_bat(3, 3)), "BAT[3] = sector 3 (the BAT itself)")
    add("multi-bat", "E", "BAT|block", mut(dyn4k, lambda d: (d.set_bat(17, 0x00100000), d.set_bat(100, first + 2))),
        "two bad BAT entries: 17 past EOF, 100 inside block 0 (check must report both)")
    add("bat2m-overlap", "E", "BAT|block|overlap", mut(dyn2m, lambda d: d.set_bat(1, d.blocks[2] // SECTOR + 8)),
        "dyn2m: BAT[1] inside block 2")

    # ---- dynamic header: table offset, entries, block size, version, data offset
    add("table-past-eof", "E", "table|BAT", mut(dyn4k, lambda d: d.set_header(16, ">Q", 1 << 40)), "table offset 1 TiB")
    add("table-huge", "E", "table|BAT", mut(dyn4k, lambda d: d.set_header(16, ">Q", 0xFFFFFFFFFFFFFE00)), "table offset near 2^64 (overflow bait)")
    add("table-unaligned", "E", "table|BAT|align", mut(dyn4k, lambda d: d.set_header(16, ">Q", 1537)), "table offset 1537 (not 512-aligned)")
    add("table-zero", "E", "table|BAT|overlap|footer", mut(dyn4k, lambda d: d.set_header(16, ">Q", 0)), "table offset 0 (on the footer copy)")
    add("table-on-header", "E", "table|BAT|overlap|header", mut(dyn4k, lambda d: d.set_header(16, ">Q", 1024)), "table offset 1024 (inside the header)")
    add("table-near-eof", "E", "table|BAT|end of file|EOF|past", mut(dyn4k, lambda d: d.set_header(16, ">Q", n - 512)), "BAT runs from the end footer past EOF")
    add("entries-ffffffff", "E", "entries|table|BAT", mut(dyn4k, lambda d: d.set_header(28, ">I", 0xFFFFFFFF)), "max table entries 0xFFFFFFFF")
    add("entries-zero", "E", "entries|table|BAT", mut(dyn4k, lambda d: d.set_header(28, ">I", 0)), "max table entries 0")
    add("entries-short", "E", "entries|table|BAT", mut(dyn4k, lambda d: d.set_header(28, ">I", 200)), "200 entries for 256 blocks")
    add("entries-extra", "T", ".", mut(dyn2m, lambda d: d.set_header(28, ">I", 4)), "dyn2m: 4 entries for 3 blocks (the extra one unused, in the BAT's 0xFF pad; Azure's concern only)")
    add("bs-zero", "E", "block size", mut(dyn4k, lambda d: d.set_header(32, ">I", 0)), "block size 0")
    add("bs-256", "E", "block size", mut(dyn4k, lambda d: d.set_header(32, ">I", 256)), "block size 256 (under a sector)")
    add("bs-not-pow2", "E", "block size", mut(dyn4k, lambda d: d.set_header(32, ">I", 3 * 4096)), "block size 12288 (not a power of two)")
    add("bs-1g", "E", "block size", mut(dyn4k, lambda d: d.set_header(32, ">I", 1 << 30)), "block size 1 GiB (over 256 MiB)")
    add("bs-2g", "E", "block size", mut(dyn4k, lambda d: d.set_header(32, ">I", 0x80000000)), "block size 2 GiB (sign bit)")
    add("hdr-version-2", "E", "version", mut(dyn4k, lambda d: d.set_header(24, ">I", 0x00020000)), "dynamic header version 2.0")
    add("hdr-dataoff-32bit", "T", ".", mut(dyn4k, lambda d: d.set_header(8, ">Q", 0xFFFFFFFF)), "header data offset 0xFFFFFFFF (spec wording; accept both)")

    # ---- footer fields
    add("dataoff-past-eof", "E", "data offset|header", mut(dyn4k, lambda d: d.set_footer(16, ">Q", 1 << 40)), "footer data offset 1 TiB")
    add("dataoff-huge", "E", "data offset|header", mut(dyn4k, lambda d: d.set_footer(16, ">Q", 0xFFFFFFFFFFFFFC00)), "footer data offset near 2^64 on a dynamic disk")
    add("dataoff-unaligned", "E", "data offset|header|align|cookie", mut(dyn4k, lambda d: d.set_footer(16, ">Q", 513)), "footer data offset 513")
    add("dataoff-zero", "E", "data offset|header|cookie", mut(dyn4k, lambda d: d.set_footer(16, ">Q", 0)), "footer data offset 0 (points at the footer copy)")
    add("dataoff-allones-dyn", "E", "data offset|header", mut(dyn4k, lambda d: d.set_footer(16, ">Q", ALL_ONES)), "dynamic disk with the fixed disk's data offset")
    add("size-huge", "E", "size", mut(dyn4k, lambda d: d.set_footer(48, ">Q", 1 << 63)), "current size 2^63")
    add("size-allones", "E", "size", mut(dyn4k, lambda d: d.set_footer(48, ">Q", ALL_ONES)), "current size 2^64-1")
    add("size-unaligned", "EW", "size", mut(dyn4k, lambda d: d.set_footer(48, ">Q", (1 << 20) - 100)), "current size not a multiple of 512",
        content=False)
    add("size-over-bat", "E", "size|entries|table|BAT", mut(dyn4k, lambda d: d.set_footer(48, ">Q", 2 << 20)), "current size 2 MiB, BAT covers 1 MiB")
    add("size-zero", "A", "size", mut(dyn4k, lambda d: d.set_footer(48, ">Q", 0)), "current size 0")
    add("fixed-short", "E", "size|short|truncat|end of file|EOF|bytes, but the file is", mut(fixed, lambda d: d.set_footer(48, ">Q", 2 << 20)), "fixed: footer says 2 MiB, file holds 1 MiB")
    add("fixed-size-huge", "E", "size|short|truncat|end of file|EOF|bytes, but the file is", mut(fixed, lambda d: d.set_footer(48, ">Q", 1 << 62)), "fixed: current size 2^62")
    add("fixed-dataoff-512", "A", "data offset", mut(fixed, lambda d: d.set_footer(16, ">Q", 512)), "fixed disk with data offset 512")
    for t in (0, 1, 5, 6, 7, 0xFFFFFFFF):
        add("type-%d" % t, "E", "type", mut(dyn4k, lambda d, t=t: d.set_footer(60, ">I", t)), "disk type %d" % t)
    add("type-fixed-on-dyn", "E", "size|short|end of file|EOF|data offset|fixed", mut(dyn4k, lambda d: d.set_footer(60, ">I", 2)),
        "type fixed on a dynamic layout (file shorter than the size)")
    add("type-dyn-on-fixed", "E", "data offset|header", mut(fixed, lambda d: d.set_footer(60, ">I", 3)), "type dynamic on a fixed disk (data offset all-ones)")
    add("type-diff-noparent", "E", "parent|differencing", mut(dyn4k, lambda d: d.set_footer(60, ">I", 4)),
        "type differencing but no parent name, UUID or locator")
    add("version-2", "E", "version", mut(dyn4k, lambda d: d.set_footer(12, ">I", 0x00020000)), "footer version 2.0")
    add("version-1.1", "T", ".", mut(dyn4k, lambda d: d.set_footer(12, ">I", 0x00010001)), "footer version 1.1 (major 1)")
    add("features-zero", "EW", "feature", mut(dyn4k, lambda d: d.set_footer(8, ">I", 0)), "features 0 (the reserved bit 0x2 clear)")
    add("features-temporary", "T", ".", mut(dyn4k, lambda d: d.set_footer(8, ">I", 3)), "temporary bit set")
    add("saved-state-2", "EW", "saved", mut(dyn4k, lambda d: d.set_footer(84, ">B", 2)), "saved state 2")
    add("uuid-null", "EW", "uuid|identifier", mut(dyn4k, lambda d: d.set_footer_bytes(68, bytes(16))), "null UUID")
    add("geometry-zero", "A", "geometry|CHS|cylinder|head|sector", mut(dyn4k, lambda d: d.set_footer(56, ">HBB", 0, 0, 0)), "CHS 0/0/0")
    add("geometry-too-big", "C", "geometry|CHS|cylinder", mut(dyn4k, lambda d: d.set_footer(56, ">HBB", 60000, 16, 63)),
        "CHS 60000/16/63 on a 1 MiB disk (not the 65535/16/255 marker): spec 8, geometry <= the spec CHS of the size")
    add("vpc-chs-small", "A", "geometry|CHS|size", mut(dyn4k, lambda d: (d.set_footer_bytes(28, b"vpc "), d.set_footer(56, ">HBB", 1, 1, 1))),
        "creator vpc with CHS 1/1/1 (the CHS rule makes it 512 bytes)")

    # ---- differencing: locators and parent
    # Header field offsets of locator i: 576 + 24*i (+4 space, +8 length, +16 offset).
    nd = len(diff.data)
    add("loc-past-eof", "EW", "locator", mut(diff, lambda d: d.set_header(576 + 16, ">Q", 1 << 40)), "W2ru data offset 1 TiB (W2ku and the name still find the parent)")
    add("loc-len-huge", "EW", "locator", mut(diff, lambda d: d.set_header(576 + 8, ">I", 0xFFFFFFFF)), "W2ru data length 0xFFFFFFFF")
    add("loc-len-over-space", "EW", "locator", mut(diff, lambda d: d.set_header(576 + 8, ">I", 4096)), "W2ru length 4096 over its 512-byte space")
    add("loc-straddle-eof", "EW", "locator", mut(diff, lambda d: d.set_header(576 + 16, ">Q", nd - 4)), "W2ru data runs past EOF")
    add("loc-unknown-code", "EW", "locator", mut(diff, lambda d: d.set_header(576, ">I", 0x41424344)), "locator code ABCD")
    add("parent-uuid-mismatch", "E", "parent|uuid", mut(diff, lambda d: (d.data.__setitem__(slice(512 + 40, 512 + 56), bytes(range(16))), d.fix_header())),
        "parent UUID differs from parent.vhd's")
    add("parent-missing", "E", "parent", mut(diff, lambda d: (
        d.data.__setitem__(slice(512 + 64, 512 + 576), "nothere.vhd".encode("utf-16-be").ljust(512, b"\0")),
        d.data.__setitem__(slice(512 + 576, 512 + 768), bytes(192)), d.fix_header())), "parent name nothere.vhd, no locators")

    def self_parent(d):
        d.data[512 + 40:512 + 56] = d.data[68:84]
        d.data[512 + 64:512 + 576] = "diff-self-parent.vhd".encode("utf-16-be").ljust(512, b"\0")
        d.data[512 + 576:512 + 768] = bytes(192)
        d.fix_header()
    add("diff-self-parent", "E", "parent|loop|chain|cycle|itself", mut(diff, self_parent), "its own parent (name and UUID): a loop")
    add("dyn-locator-junk", "T", ".", mut(dyn4k, lambda d: d.set_header(576, ">IIIIQ", 0x57327275, 512, 24, 0, 1 << 40)),
        "dynamic disk with a stray W2ru locator past EOF (unused on type 3)")

    with open(os.path.join(outdir, "cases.tsv"), "w") as tsv:
        tsv.write("name\tclass\tkeyword\tsha256\tsize\tfamily\twhat\n")
        for name, cls, kw, sha, size, family, what, data in cases:
            with open(os.path.join(outdir, name), "wb") as fh:
                fh.write(data)
            tsv.write("\t".join((name, cls, kw, sha, size, family, what)) + "\n")
    # the raw guest views, for the oracle cross-checks of the controls
    for name, disk in (("ok-dyn4k", dyn4k), ("ok-dyn2m", dyn2m), ("ok-fixed", fixed), ("ok-diff", diff)):
        with open(os.path.join(outdir, name + ".raw"), "wb") as fh:
            fh.write(disk.virtual)
    print("%d cases in %s" % (len(cases), outdir))


if __name__ == "__main__":
    main()
