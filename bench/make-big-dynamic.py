#!/usr/bin/env python3
"""Write a sparse dynamic VHD of SIZE_GIB with N allocated 2 MiB blocks (bench only).

The blocks are laid out one after another in BAT order with all-ones bitmaps;
their data is a hole. Used to time `vhdtool check` on a 2 TiB-class disk with a
million blocks (issue 5: check must be linear in the number of blocks).
Usage: make-big-dynamic.py PATH SIZE_GIB NBLOCKS
"""
import os, struct, sys, uuid

def checksum(buf, off):
    b = bytearray(buf); b[off:off + 4] = b"\0\0\0\0"
    return (~sum(b)) & 0xFFFFFFFF

def footer(size, dtype, uid):
    f = bytearray(512)
    struct.pack_into(">8sIIQI4sII", f, 0, b"conectix", 2, 0x10000, 512, 0, b"qem2", 1, 0x5769326B)
    struct.pack_into(">QQHBBI", f, 40, size, size, 65535, 16, 255, dtype)
    f[68:84] = uid
    struct.pack_into(">I", f, 64, checksum(f, 64))
    return bytes(f)

def main():
    path, size_gib, nblocks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    size, bs = size_gib << 30, 2 << 20
    entries = size // bs
    assert nblocks <= entries
    bat_off = 1536
    bat_bytes = (entries * 4 + 511) // 512 * 512
    data = (bat_off + bat_bytes + 4095) // 4096 * 4096 - 512
    stride = 512 + bs
    uid = uuid.uuid4().bytes
    h = bytearray(1024)
    struct.pack_into(">8sQQIII", h, 0, b"cxsparse", 0xFFFFFFFFFFFFFFFF, bat_off, 0x10000, entries, bs)
    struct.pack_into(">I", h, 36, checksum(h, 36))
    bat = bytearray(b"\xff" * bat_bytes)
    for i in range(nblocks):
        struct.pack_into(">I", bat, 4 * i, (data + i * stride) // 512)
    end = data + nblocks * stride
    f = footer(size, 3, uid)
    with open(path, "wb") as out:
        out.write(f); out.write(h); out.seek(bat_off); out.write(bat)
        ones = b"\xff" * 512
        for i in range(nblocks):
            out.seek(data + i * stride); out.write(ones)
        out.seek(end); out.write(f)

main()
