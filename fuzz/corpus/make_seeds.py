#!/usr/bin/env python3
"""Writes the structured seeds of fuzz/corpus/ (run from fuzz/: python3 corpus/make_seeds.py).

The text corpora come from profiler/tests/fuzz/*/seeds.txt (lines, or `---`-separated blocks);
the binary-input targets get inputs laid out as their fuzz_targets/*.rs read them. The ELF
seeds (elf/, go_elf/, awaits/) are small executables built from images/prog.c, see
images/README.md.
"""
import hashlib
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def text_seeds(src, target, whole=False):
    text = open(os.path.join(ROOT, "profiler/tests/fuzz", src, "seeds.txt"), encoding="utf-8").read()
    parts = text.split("\n---\n") if "\n---\n" in text else text.splitlines()
    if whole:
        parts.append(text)
    for p in parts:
        b = p.encode()
        write(target, hashlib.sha1(b).hexdigest()[:16], b)


u8 = lambda v: struct.pack("<B", v)
u16 = lambda v: struct.pack("<H", v)
u32 = lambda v: struct.pack("<I", v)
u64 = lambda v: struct.pack("<Q", v)

# go_memory: see fuzz_targets/go_memory.rs and GO_FUNCS in src/lib.rs
TEXT = 0x401000
SIZES = [0x20, 0x20, 0x20, 0x40, 0x20, 0x10]
FRAMES = [0x18, 0x28, 0x10, 0x30, 0x08, 0x00]
ENTRY = [TEXT + sum(SIZES[:i]) for i in range(len(SIZES))]
STACK = 0xC000_0000


def go_stack(chain, bias=0):
    """Stack bytes from sp for a call chain (function indexes, innermost first): each frame's
    return address into the next function at its frame size."""
    words = {}
    sp = 0
    for f, caller in zip(chain, chain[1:]):
        words[sp + FRAMES[f]] = ENTRY[caller] + 5 + bias
        sp += FRAMES[f] + 8
    size = sp + 64
    b = bytearray(size)
    for o, v in words.items():
        b[o:o + 8] = u64(v)
    return bytes(b)


def g(status, goid, sp, pc, hi):
    b = bytearray(0x140)
    b[8:16] = u64(hi)
    b[56:64] = u64(sp)
    b[64:72] = u64(pc)
    b[144:148] = u32(status)
    b[152:160] = u64(goid)
    b[176] = 14
    b[296:304] = u64(ENTRY[4] + 9)
    b[312:320] = u64(ENTRY[3])
    return bytes(b)


def go_memory(mode, n, bias=0):
    chain = [0, 1, 3, 5]  # gopark <- chanrecv1 <- main.worker.func1 <- goexit
    st = go_stack(chain, bias)
    out = u8(mode) + u8(n) + b"\0" * n  # no g pointer from the input
    for i in range(n):
        gg = g(4 if i % 2 == 0 else 6, 100 + i, STACK, ENTRY[0] + 4 + bias, STACK + len(st))
        out += u16(len(gg)) + gg
    out += u16(len(st)) + st
    out += u8(0) + u8(0) + u8(4) + u16(len(st))  # sp, function, pc offset, stack top
    return out


def tokio_lists(flags, shards, n, owner, patches=b"", npatch=0, seed_at=0, max_nodes=1000, budget=4096):
    return (u8(flags) + u8(shards) + u8(n) + u8(owner - 1) + u8(0) + u16(10)
            + u8(npatch) + patches + u8(seed_at) + u16(max_nodes) + u16(budget))


def vtable(poll, trailer, sched=32):
    return [poll, 0x1100, 0x1200, 0x1300, 0x1400, 0x1500, 0x1600, trailer, sched, sched + 8]


def async_poll(chain=False):
    """An async fn's poll as rustc compiles it, at 0x1000 (the code target's base): a dispatch on
    the byte at self+0x30 (jump table, or a compare chain), states 1 and 2 raising the completion
    panic with the Location at 0x1300, state 3 polling the awaitee at self+0x28."""
    base, table, loc, name = 0x1000, 0x1200, 0x1300, 0x1340
    code = bytearray()

    def ip():
        return base + len(code)

    def rel(op, target):
        end = ip() + len(op) + 4
        code.extend(op + struct.pack("<i", target - end))

    code += bytes([0x48, 0x89, 0xFB, 0x0F, 0xB6, 0x47, 0x30])  # mov rbx, rdi; movzx eax, byte [rdi+0x30]
    targets = {}
    if chain:
        fix = []
        for value, op in [(0, [0x85, 0xC0]), (3, [0x83, 0xF8, 0x03]), (1, [0x83, 0xF8, 0x01])]:
            code += bytes(op) + bytes([0x0F, 0x84])
            fix.append((len(code), value))
            code += b"\0" * 4
        code += bytes([0xE9])
        fix.append((len(code), 2))
        code += b"\0" * 4
    else:
        rel(bytes([0x48, 0x8D, 0x0D]), table)  # lea rcx, [rip+table]
        code += bytes([0x48, 0x63, 0x04, 0x81, 0x48, 0x01, 0xC8, 0xFF, 0xE0])  # movsxd; add; jmp rax
    targets[0] = ip()
    code += bytes([0xC3])
    for state, callee in [(1, 0x2000), (2, 0x2010)]:
        targets[state] = ip()
        rel(bytes([0x48, 0x8D, 0x3D]), loc)  # lea rdi, [rip+loc]
        rel(bytes([0xE8]), callee)
        code += bytes([0x0F, 0x0B])
    targets[3] = ip()
    code += bytes([0x48, 0x8D, 0x7B, 0x28])  # lea rdi, [rbx+0x28]
    rel(bytes([0xE8]), 0x3000)
    code += bytes([0xC3])
    if chain:
        for at, value in fix:
            code[at:at + 4] = struct.pack("<i", targets[value] - (base + at + 4))
    out = bytearray(code) + b"\xcc" * (0x400 - len(code))
    for i in range(4):
        out[table - base + 4 * i:table - base + 4 * i + 4] = struct.pack("<i", targets[i] - table)
    out[loc - base:loc - base + 24] = u64(name) + u64(10) + u32(7) + u32(40)
    out[name - base:name - base + 10] = b"src/app.rs"
    return bytes(out)


def main():
    write("code", "jump-table", async_poll())
    write("code", "compare-chain", async_poll(chain=True))
    text_seeds("names", "names")
    text_seeds("config", "config")
    text_seeds("record", "series", whole=True)
    write("go_memory", "parked-119", go_memory(0, 3))
    write("go_memory", "parked-pie", go_memory(4, 2, bias=0x5555_0000_0000))
    write("go_memory", "ptrlen", go_memory(16, 2))
    write("go_memory", "layout-from-input", u8(1) + b"".join(u16(o) for o in [144, 152, 168, 176, 296, 312, 56]) + go_memory(0, 2)[1:])
    write("go_memory", "huge-len", u8(8) + u8(2) + u64(9_000_000) + go_memory(0, 2)[2:])
    write("tokio_lists", "sharded-4", tokio_lists(0, 3, 20, 3))
    write("tokio_lists", "inline", tokio_lists(0, 0, 3, 1))
    write("tokio_lists", "swapped-links", tokio_lists(1, 2, 6, 2))
    write("tokio_lists", "tail-first", tokio_lists(2, 5, 33, 9, seed_at=7))
    # a cycle: the oldest task's next points back at the head (region CELLS, offset 136)
    write("tokio_lists", "cycle", tokio_lists(0, 0, 5, 1, patches=u8(2) + u16(136) + u8(2) + u8(4), npatch=1, max_nodes=50))
    for name, words, flags in [
        ("two", [7, 0x2000] + vtable(0x2000, 256) + [0, 0] + vtable(0x3000, 128), 0),
        ("polls", vtable(0x2000, 256) + vtable(0x3000, 4096, 64), 1),
    ]:
        head = u8(flags) + u64(0x10_000) + u32(0x1000) + u32(0x8000)
        if flags & 1:
            head += u64(0x3000) * 4
        write("tokio_vtables", name, head + b"".join(u64(w) for w in words))
    # unwind on the committed image: (image choice, flags, symbol, ip offset, bp, max, stack)
    # return addresses into mid, outer and main of images/c-eh-frame (nm), between zeros
    code = [0x720 + 0x30, 0x810 + 0x10, 0x5f0 + 0x10]
    stack = b"".join(u64(0x5555_0000_0000 + code[i % 3] if i % 4 == 3 else 0) for i in range(64))
    write("unwind", "code-pointers", u8(0) + u8(0) + u8(3) + u8(4) + u64(0) + u8(64) + stack)
    write("unwind", "frame-pointers", u8(0) + u8(4) + u8(1) + u8(0) + u16(0x40) + u8(32) + stack)
    img = open(os.path.join(OUT, "..", "images", "c-eh-frame"), "rb").read()
    write("unwind", "image-from-input", u8(1) + u16(len(img)) + img + u8(0) + u8(2) + u8(1) + u64(0) + u8(16) + stack[:256])


if __name__ == "__main__":
    main()
