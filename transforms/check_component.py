#!/usr/bin/env python3
"""Checks that .wasm files are components of sluice's `transformer` world
(or of `packed-transformer`, its 0.1.1 superset).

Usage: check_component.py FILE.wasm...   (exit 1 if any check fails)

Reads only the outer layer of the binary, with the standard library, so
build.sh needs no wasm-tools (a multi-minute cargo install) for it:
- the preamble: magic `\\0asm`, version 0x0d, layer 1 (a component, not a
  core module, which would have version 1 and layer 0);
- the component's top-level export section: it must export the functions
  `init` and `transform`, and says whether it exports `transform-packed`
  (the Rust SDK's components do); other exports, such as the empty `exports`
  instance componentize-py adds, are listed but harmless: the host ignores
  them;
- the top-level import section: only `log`, the world's types interfaces
  (`sluice:transform/types@...`, `sluice:transform/packed@...`) and the type
  names the world `use`s from them, and WASI interfaces (`wasi:*`), which
  sluice links with an empty context. WASI imports are printed, since which
  WASI interfaces a guest language pulls in matters to the host (a Rust guest's `log` import is
  absent when the plugin never logs: the linker drops it).

Type-checking the functions' signatures against the WIT is left to the host
(wasmtime's bindgen!), which refuses a mismatched component at load time.
"""

import sys

PREAMBLE = b"\x00asm\x0d\x00\x01\x00"
IMPORT_SECTION, EXPORT_SECTION = 10, 11
SORT_FUNC, SORT_VALUE, SORT_TYPE = 0x01, 0x02, 0x03
# The types the worlds bring in with `use types.{...}` and `use packed.{...}`.
WORLD_TYPES = {"batch-context", "input-record", "output-record", "level",
               "packed-records", "packed-answer", "answer-error"}


class Reader:
    def __init__(self, data, pos=0, end=None):
        self.data, self.pos, self.end = data, pos, len(data) if end is None else end

    def byte(self):
        if self.pos >= self.end:
            raise ValueError("truncated")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u32(self):  # unsigned LEB128
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result
            shift += 7
            if shift > 35:
                raise ValueError("bad LEB128")

    def name(self):
        n = self.u32()
        if self.pos + n > self.end:
            raise ValueError("truncated name")
        s = self.data[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def extern_name(self):
        # 0x00 (and the older 0x01) precede a plain name; 0x02, names with
        # options, is an unstable feature no toolchain here emits.
        tag = self.byte()
        if tag not in (0x00, 0x01):
            raise ValueError(f"unsupported extern name tag {tag:#x}")
        return self.name()

    def sort(self):
        s = self.byte()
        if s == 0x00:
            self.byte()  # core sort
        return s

    def extern_desc(self):
        kind = self.sort()
        if kind == 0x03:  # type: a bound, eq(typeidx) or sub resource
            if self.byte() == 0x00:
                self.u32()
        elif kind == SORT_VALUE:
            raise ValueError("value imports/exports are not expected")
        else:
            self.u32()
        return kind


def check(path):
    data = open(path, "rb").read()
    if data[:4] != PREAMBLE[:4]:
        return [f"not a wasm binary (magic {data[:4]!r})"], [], []
    if data[4:8] != PREAMBLE[4:]:
        return [f"a core module, not a component (version/layer bytes {data[4:8].hex()})"], [], []
    imports, exports = [], []
    r = Reader(data, 8)
    while r.pos < len(data):
        section, size = r.byte(), r.u32()
        body = Reader(data, r.pos, r.pos + size)
        r.pos += size
        if section == IMPORT_SECTION:
            for _ in range(body.u32()):
                name = body.extern_name()
                imports.append((name, body.extern_desc()))
        elif section == EXPORT_SECTION:
            for _ in range(body.u32()):
                name = body.extern_name()
                kind = body.sort()
                body.u32()
                if body.byte() == 0x01:
                    body.extern_desc()
                exports.append((name, kind))
    errors = []
    funcs = {n for n, k in exports if k == SORT_FUNC}
    for want in ("init", "transform"):
        if want not in funcs:
            errors.append(f"does not export the function {want!r} (exports: {sorted(n for n, _ in exports)})")
    for name, kind in imports:
        allowed = (
            (name == "log" and kind == SORT_FUNC)
            or (kind == SORT_TYPE and name in WORLD_TYPES)
            or name.startswith(("sluice:transform/types@", "sluice:transform/packed@"))
            or name.startswith("wasi:")
        )
        if not allowed:
            errors.append(f"imports {name!r}, which sluice does not provide")
    return errors, imports, exports


def main(paths):
    failed = False
    for path in paths:
        try:
            errors, imports, exports = check(path)
        except (OSError, ValueError, UnicodeDecodeError) as e:
            errors, imports, exports = [f"unreadable: {e}"], [], []
        # Grouped by WASI package (`wasi:cli/stdout@0.2.6` -> cli@0.2.6) to keep it one line.
        wasi = sorted({n[5:].split("/")[0] + "@" + n.rsplit("@", 1)[-1] for n, _ in imports if n.startswith("wasi:")})
        if errors:
            failed = True
            for e in errors:
                print(f"{path}: FAIL: {e}")
        else:
            names = {n for n, _ in exports}
            world = "packed-transformer" if "transform-packed" in names else "transformer"
            extra = sorted(names - {"init", "transform", "transform-packed"})
            note = f"; other exports: {', '.join(extra)}" if extra else ""
            print(f"{path}: ok, world {world}{note}; WASI: {' '.join(wasi) or 'none'}")
    return 1 if failed or not paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
