#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/).

Every seed is built here from the VHD specification, byte by byte: a fixed
footer, a dynamic disk of a few blocks, a differencing child of the scratch
parent (fuzz_util.c: parent.vhd, UUID "fuzz.parent.uuid") with W2ru, W2ku,
Wi2r and MacX locators, and the inputs that found bugs (regress-*). No bytes
come from the sample disks in ../shared (some are copyleft). Each target reads
its input in its own layout; see the comment at the top of fuzz_<target>.c.

Usage: tests/fuzz/make-seeds.py [CORPUS_DIR]   (files are overwritten, none removed)
"""
import os
import struct
import sys

SECTOR = 512
PARENT_UUID = b"fuzz.parent.uuid"
PARENT_NAME = "parent.vhd"
IMAGE_UUID = b"seed.image.uuid."
UNUSED = 0xFFFFFFFF
W2KU, W2RU, WI2K, WI2R, MACX = (int.from_bytes(c, "big") for c in
                                (b"W2ku", b"W2ru", b"Wi2k", b"Wi2r", b"MacX"))


def align(v, a=SECTOR):
    return (v + a - 1) // a * a


def checksum(buf, at):
    total = sum(buf[:at]) + sum(buf[at + 4:])
    return ~total & 0xFFFFFFFF


def chs(size):
    """CHS geometry per the spec's appendix (as vd_chs_from_size)."""
    n = min(size // SECTOR, 65535 * 16 * 255)
    if n >= 65535 * 16 * 63:
        s, h = 255, 16
        cth = n // s
    else:
        s = 17
        cth = n // s
        h = max((cth + 1023) // 1024, 4)
        if cth >= h * 1024 or h > 16:
            s, h = 31, 16
            cth = n // s
        if cth >= h * 1024:
            s, h = 63, 16
            cth = n // s
    return cth // h, h, s


def footer(disk_type, size, data_offset=UNUSED << 32 | UNUSED, creator=b"seed",
           uuid=IMAGE_UUID, geometry=None, reserved=b""):
    c, h, s = geometry or chs(size)
    buf = bytearray(SECTOR)
    buf[86:86 + len(reserved)] = reserved
    struct.pack_into(">8sIIQI4sIIQQHBBI", buf, 0, b"conectix", 2, 0x00010000, data_offset,
                     0x2a000000, creator, 0x00010000, WI2K, size, size, c, h, s, disk_type)
    buf[68:84] = uuid
    struct.pack_into(">I", buf, 64, checksum(buf, 64))
    return bytes(buf)


def dynhdr(table_offset, entries, block_size, parent=None, locators=()):
    """PARENT: (uuid, name); LOCATORS: (code, data_space, data_length, data_offset)."""
    buf = bytearray(1024)
    struct.pack_into(">8sQQIII", buf, 0, b"cxsparse", UNUSED << 32 | UNUSED, table_offset,
                     0x00010000, entries, block_size)
    if parent:
        buf[40:56] = parent[0]
        name = parent[1].encode("utf-16-be")[:510]
        buf[64:64 + len(name)] = name
    for i, (code, space, length, offset) in enumerate(locators):
        struct.pack_into(">IIIIQ", buf, 576 + 24 * i, code, space, length, 0, offset)
    struct.pack_into(">I", buf, 36, checksum(buf, 36))
    return bytes(buf)


def bitmap(block_size, present):
    """Sector bitmap (MSB first) with the sectors in PRESENT set, 512-rounded."""
    bm = bytearray(align((block_size // SECTOR + 7) // 8))
    for k in present:
        bm[k >> 3] |= 0x80 >> (k & 7)
    return bytes(bm)


def pattern(n, salt):
    return bytes(((i * 7 + salt) & 0xFF) | 1 for i in range(n))


class Image:
    """A sparse file in memory: put bytes at offsets, then take the whole."""

    def __init__(self):
        self.buf = bytearray()

    def put(self, off, data):
        if len(self.buf) < off + len(data):
            self.buf.extend(bytes(off + len(data) - len(self.buf)))
        self.buf[off:off + len(data)] = data

    def bytes(self):
        return bytes(self.buf)


def locator_blobs():
    """The parent's path as each locator code stores it."""
    return [
        (W2RU, (".\\" + PARENT_NAME).encode("utf-16-le")),
        (W2KU, ("/nonexistent/dir/" + PARENT_NAME).encode("utf-16-le")),
        (WI2R, (".\\" + PARENT_NAME).encode()),
        (MACX, ("file://./" + PARENT_NAME).encode()),
    ]


def dynamic_image(block_size=4096, entries=8, blocks=None, diff=False, copy=True, end=True,
                  batmap=False, size=None, creator=b"seed"):
    """BLOCKS: {entry: sectors present}; blocks are stored in reverse entry order."""
    blocks = blocks if blocks is not None else {0: range(block_size // SECTOR), 2: [0, 1, 5]}
    size = entries * block_size if size is None else size
    img = Image()
    table = 1536
    at = align(table + entries * 4)
    locs = []
    if diff:
        for code, blob in locator_blobs():
            # Sectors for the first, bytes for the others: both units occur in real files.
            space = 1 if not locs else SECTOR
            locs.append((code, space, len(blob), at))
            img.put(at, blob)
            at += SECTOR
    if batmap:
        img.put(at, b"tdbatmap" + struct.pack(">QI", at + SECTOR, 1))
        at += 2 * SECTOR
    bat = [UNUSED] * entries
    bm_len = len(bitmap(block_size, []))
    for i in sorted(blocks, reverse=True):
        bat[i] = at // SECTOR
        img.put(at, bitmap(block_size, blocks[i]))
        img.put(at + bm_len, pattern(block_size, i))
        at += bm_len + block_size
    kind = 4 if diff else 3
    foot = footer(kind, size, SECTOR, creator=creator)
    if copy:
        img.put(0, foot)
    img.put(SECTOR, dynhdr(table, entries, block_size,
                           (PARENT_UUID, PARENT_NAME) if diff else None, locs))
    img.put(table, b"".join(struct.pack(">I", e) for e in bat))
    if end:
        img.put(at, foot)
    else:
        img.put(at - 1, b"\0")
    return img.bytes()


def bat_over_end_footer():
    """A dynamic disk whose BAT (160 entries) runs over the end footer at 2048: the
    footer's bytes are read as entries 128-159, which point outside the file."""
    img = Image()
    foot = footer(3, 8 * 4096, SECTOR)
    img.put(0, foot)
    img.put(SECTOR, dynhdr(1536, 160, 4096))
    img.put(1536, b"\xff" * 512)
    img.put(2048, foot)
    return img.bytes()


def copy_with_reserved_bytes():
    """A dynamic disk with only its footer copy at 0, whose reserved bytes are not all
    zero (the checksum covers them)."""
    img = Image()
    img.buf = bytearray(dynamic_image(end=False))
    img.put(0, footer(3, 8 * 4096, SECTOR, reserved=b"\0" * 328 + b"\1"))
    return img.bytes()


def fixed_image(size=8192, tail=512, creator=b"seed", geometry=None):
    foot = footer(2, size, creator=creator, geometry=geometry)
    return pattern(size, 3) + foot[:tail]


# ---- per-target inputs ----

def seeds_image():
    c, h, s = chs(34816)
    return {
        "fixed-8k": fixed_image(),
        "fixed-511-byte-footer": fixed_image(tail=511),
        "fixed-vpc-chs": fixed_image(size=36864, creator=b"vpc ", geometry=(c, h, s)),
        "dynamic-4k-blocks": dynamic_image(),
        "dynamic-512-blocks": dynamic_image(block_size=512, entries=16,
                                            blocks={1: [0], 3: [0], 15: [0]}),
        "dynamic-cut-last-block": dynamic_image(size=7 * 4096 + 1024),
        "dynamic-no-end-footer": dynamic_image(end=False),
        "dynamic-no-copy": dynamic_image(copy=False),
        "dynamic-batmap": dynamic_image(batmap=True),
        "differencing-child": dynamic_image(entries=64, diff=True,
                                            blocks={0: [1, 2], 20: [3, 4, 5], 21: range(8)}),
        "differencing-empty": dynamic_image(entries=64, diff=True, blocks={}),
        # fuzz_bat's finding as a whole file: 8 BAT entries, current size 2^64 - 512.
        "regress-size-wraps-entry-count": dynamic_image(blocks={}, size=0xFFFFFFFFFFFFFE00),
        # Found by fuzz_image's repair property: open accepts a BAT that overlaps the end
        # footer; repair clears the "entries" read from the footer, destroying it, and
        # a second repair has to restore it.
        "regress-bat-over-end-footer": bat_over_end_footer(),
        # Found by fuzz_image's repair property: repair restores the end footer from the
        # copy at 0 re-encoded (reserved bytes dropped), so the next open finds the two
        # copies different and a second repair rewrites the copy.
        "regress-repair-footer-differs-from-copy": copy_with_reserved_bytes(),
    }


def seeds_footer():
    def with_data(foot, flags, data=b""):
        return foot + bytes([flags]) + data

    fix, copy, short, bad, sized, noend = 1, 2, 4, 8, 16, 32
    dyn = dynamic_image(copy=False, blocks={1: [0, 1]})
    return {
        "fixed": with_data(footer(2, 4096), fix | sized, pattern(512, 1)),
        "fixed-511": with_data(footer(2, 2048), fix | sized | short),
        "fixed-vpc": with_data(footer(2, 36864, creator=b"vpc ", geometry=chs(34816)),
                               fix | sized),
        "fixed-unfixed-checksum": with_data(footer(2, 1024), sized),
        "dynamic-with-header": with_data(footer(3, 8 * 4096, SECTOR), fix | copy,
                                         dyn[SECTOR:len(dyn) - SECTOR]),
        "dynamic-bad-copy": with_data(footer(3, 8 * 4096, SECTOR), fix | copy | bad,
                                      dyn[SECTOR:len(dyn) - SECTOR]),
        "dynamic-no-end": with_data(footer(3, 8 * 4096, SECTOR), fix | copy | noend,
                                    dyn[SECTOR:len(dyn) - SECTOR]),
        "differencing": with_data(footer(4, 65536, SECTOR), fix | copy),
        # Found by fuzz_footer's repair property (as image/regress-repair-footer-differs-
        # from-copy): the end footer has a nonzero reserved byte, the copy at 0 a bad
        # checksum; repair rewrites the copy re-encoded, and it never matches.
        "regress-repair-copy-never-matches": with_data(
            footer(3, 8 * 4096, SECTOR, reserved=b"\0" * 378 + b"\xe2"), fix | copy | bad,
            dyn[SECTOR:len(dyn) - SECTOR]),
    }


def seeds_dynhdr():
    def entry(hdr, flags, size, tail):
        return hdr + bytes([flags]) + struct.pack(">Q", size) + tail

    fix, diff, nocopy, noend, raw = 1, 2, 4, 8, 0x10
    bs = 4096
    # The tail starts at file offset 1536: BAT (one sector), then locators, then blocks.
    bat = [UNUSED] * 8
    tail = Image()
    at = 1536 + SECTOR
    locs = []
    for code, blob in locator_blobs():
        tail.put(at - 1536, blob)
        locs.append((code, SECTOR, len(blob), at))
        at += SECTOR
    for i, present in ((1, range(8)), (6, [0, 7])):
        bat[i] = at // SECTOR
        tail.put(at - 1536, bitmap(bs, present) + pattern(bs, i))
        at += SECTOR + bs
    tail.put(0, b"".join(struct.pack(">I", e) for e in bat))
    t = tail.bytes()
    return {
        "dynamic": entry(dynhdr(1536, 8, bs), fix, 0, t),
        "dynamic-raw-size": entry(dynhdr(1536, 8, bs), fix | raw, 5 * bs + 3 * SECTOR, t),
        "dynamic-no-copy": entry(dynhdr(1536, 8, bs), fix | nocopy, 0, t),
        "dynamic-no-end": entry(dynhdr(1536, 8, bs), fix | noend, 0, t),
        "differencing": entry(dynhdr(1536, 8, bs, (PARENT_UUID, PARENT_NAME), locs),
                              fix | diff, 0, t),
        "differencing-sector-spaces": entry(
            dynhdr(1536, 8, bs, (PARENT_UUID, PARENT_NAME), [(c, 1, n, o) for c, _, n, o in locs]),
            fix | diff, 0, t),
        "differencing-set-parent": entry(dynhdr(1536, 8, bs, (PARENT_UUID, PARENT_NAME), locs),
                                         fix | diff | 0x40, 0, t),
        # Found with fuzz_dynhdr's set-parent property: a locator slot over the BAT is
        # accepted by open, and set-parent then writes the new path over the BAT.
        "regress-set-parent-locator-over-bat": entry(
            dynhdr(1536, 8, bs, (PARENT_UUID, PARENT_NAME), [(W2RU, SECTOR, 26, 1536)] + locs[1:]),
            fix | diff | 0x40, 0, t),
        "block-512": entry(dynhdr(1536, 64, 512), fix, 0, b"\xff" * 512),
        "unfixed-checksum": entry(dynhdr(1536, 8, bs)[:36] + b"\0\0\0\0" +
                                  dynhdr(1536, 8, bs)[40:], 0, 0, t),
    }


def seeds_bat():
    def entry(flags, shift, entries, mode, raw, codes, bits=b""):
        codes = codes + [0xFF] * (entries - len(codes))  # the rest are bitmap bytes
        return bytes([flags, shift - 9, entries >> 8, entries & 0xFF, mode]) + \
            struct.pack(">Q", raw) + bytes(codes) + bits

    diff, vpc, noend, write, batmap, far = 1, 2, 4, 8, 0x10, 0x20
    exact, short, raw = 0, 1, 2
    half = b"\xf0\x0f" + b"\xff" * 14
    return {
        "dynamic-4k": entry(0, 12, 8, exact, 0, [0, 0xFF, 1, 0xFF, 2, 3], half),
        "dynamic-4k-write": entry(write, 12, 8, exact, 0, [0, 0xFF, 1, 0xFF, 2], half),
        "dynamic-512": entry(0, 9, 32, exact, 0, [5, 0xFF, 4, 3, 2, 1, 0], b"\x80\x00"),
        "dynamic-cut-last": entry(write, 12, 6, short | (3 << 2), 0, [0, 1, 2, 3, 4, 5]),
        "dynamic-2m-block": entry(0, 21, 2, exact, 0, [0, 1], b"\xff" * 16 + b"\x0f"),
        "dynamic-raw-size": entry(0, 12, 8, raw, 12345 * SECTOR, [0, 1]),
        # Entry 1 is a raw sector number: slot 1's place, which no slot code uses.
        "dynamic-raw-entry": entry(0, 12, 4, exact, 0, [0, 0xFE, 0, 0, 0, 0x10, 2]),
        "dynamic-vpc": entry(vpc, 12, 16, exact, 0, [0, 1, 2]),
        "dynamic-no-end": entry(noend | write, 12, 8, exact, 0, [0xFF, 0]),
        "dynamic-batmap": entry(batmap, 12, 8, exact, 0, [1, 0]),
        # Found while writing fuzz_bat (FLAG_FAR_END), confirmed by it: with the end footer
        # at 2 TiB a new block's sector number (2^32) is truncated to 0 in the BAT, and the
        # write lands on the footer copy and the header.
        "regress-new-block-past-2tib": entry(far | write, 12, 8, exact, 0, [1, 0]),
        # The same 4 KiB lower: the last block that can still be addressed.
        "dynamic-far-end": entry(far | write, 12, 6, exact, 0, [1, 0]),
        "differencing": entry(diff, 12, 64, exact, 0, [0xFF] * 3 + [0, 1] + [0xFF] * 15 + [2],
                              half),
        "differencing-write": entry(diff | write, 12, 64, exact, 0, [0, 0xFF, 1] + [0xFF] * 17 +
                                    [2], b"\x55\xaa"),
        "differencing-larger-than-parent": entry(diff, 12, 80, exact, 0, [0xFF] * 70 + [0]),
        # Found by fuzz_bat: a current size within one block of 2^64 wraps the count of
        # BAT entries the header must have to 0; reads then index past the BAT.
        "regress-size-wraps-entry-count": entry(0, 12, 8, raw, 0xFFFFFFFFFFFFFE00, []),
    }


def seeds_locator():
    small = bytes([40])
    return {
        "w2ru": small + (".\\" + PARENT_NAME).encode("utf-16-le"),
        "w2ku-unicode": bytes([255]) + "C:\\Däten\\日本\\p😀.vhd".encode("utf-16-le"),
        "w2ku-big-endian": small + "C:\\dir\\p.vhd".encode("utf-16-be"),
        "parent-name-be": bytes([200]) + "parent 名前.vhd".encode("utf-16-be"),
        "macx": small + b"file://localhost/srv/vm/parent.vhd\0",
        "macx-relative": small + b"file://./parent.vhd",
        "wi2k": small + b"C:\\VPC\\base.vhd\0junk",
        "utf8-path": bytes([64]) + "/srv/vm/Ünïcödé/диск.vhd".encode(),
        "coded": small + b"W2ku" + ("..\\up\\p.vhd").encode("utf-16-le"),
        # Found by fuzz_locator: overlong UTF-8 ("\xc0\xaf" is not '/') must be refused.
        "regress-utf8-overlong": bytes([2]) + b";\xc0\xbf?",
    }


def main():
    top = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    targets = {"image": seeds_image, "footer": seeds_footer, "dynhdr": seeds_dynhdr,
               "bat": seeds_bat, "locator": seeds_locator}
    count = 0
    for target, make in targets.items():
        os.makedirs(os.path.join(top, target), exist_ok=True)
        for name, data in make().items():
            with open(os.path.join(top, target, name), "wb") as f:
                f.write(data)
            count += 1
    print(f"{count} seeds in {top}")


if __name__ == "__main__":
    main()
