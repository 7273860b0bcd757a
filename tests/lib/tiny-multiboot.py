#!/usr/bin/env python3
"""A tiny Multiboot kernel for console tests:

    tests/lib/tiny-multiboot.py OUT [COUNT [MESSAGE]]

prints COUNT 'x' on COM1 (default 0), then MESSAGE (default "ready") and a
newline, then halts with interrupts off for good. Assembled here, byte by
byte: a Multiboot header with the a.out kludge, loaded at 1 MiB."""
import struct
import sys

out = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 0
msg = (sys.argv[3] if len(sys.argv) > 3 else "ready").encode() + b"\n\0"
base, magic, flags = 0x100000, 0x1BADB002, 0x00010000
code = (b"\xb9" + struct.pack("<I", count) +      # mov ecx, count
        b"\x66\xba\xf8\x03" +                       # mov dx, 0x3f8
        b"\xe3\x06" +                               # jecxz 2f
        b"\xb0\x78\xee\x49\x75\xfa" +               # 1: mov al, 'x'; out dx, al; dec ecx; jnz 1b
        b"\xbe" + struct.pack("<I", base + 72) +    # 2: mov esi, msg
        b"\xac\x84\xc0\x74\x03\xee\xeb\xf8" +       # 3: lodsb; test al, al; jz 4f; out dx, al; jmp 3b
        b"\xfa\xf4\xeb\xfd")                        # 4: cli; hlt; jmp .-1
hdr = struct.pack("<8I", magic, flags, (-(magic + flags)) & 0xffffffff,
                  base, base, 0, 0, base + 32)
img = hdr + code
img += b"\0" * (72 - len(img))
with open(out, "wb") as f:
    f.write(img + msg)
