"""Profile the ``cpu`` step with ``perf``: the full (or core) benchmark scenario, with symbols for compiled code.

Usage (from the repository root; Linux with ``perf``)::

    perf record -F 4000 -o /tmp/cart.perf python -m benchmarks.profile --size 1024 --steps 300
    perf report -i /tmp/cart.perf --no-children --sort symbol

``perf`` cannot name functions that Numba compiled in memory. This script
compiles the kernels afresh (an empty temporary cache: code loaded from
Numba's on-disk cache would carry no symbol names) and, before the timed
steps, writes ``/tmp/perf-<pid>.map``, the file in which ``perf report``
looks up JIT symbols: one line per compiled function, its address, size (up
to the next function) and name (``kernels.rules.act_cart``; parallel regions
appear as ``__numba_parfor_gufunc_...``). ``--dump DIR`` also writes the
machine code of the project's functions, so that hot addresses from
``perf script -F ip,sym`` can be read with
``objdump -D -b binary -m i386:x86-64 --adjust-vma=ADDRESS FILE``
(the address is in the file name).

Compilation is part of the recording (a few seconds of Python and LLVM);
``--steps`` should make the stepping dominate. The step time is printed at
the end (it includes no compilation).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import tempfile
import time
from pathlib import Path


def _short(name: str) -> str:
    """``_ZN7kernels5rules8act_cartB...`` -> ``kernels.rules.act_cart`` (Itanium-style nested names)."""
    if not name.startswith("_ZN"):
        return name[:80]
    rest, parts = name[3:], []
    while rest[:1].isdigit():
        digits = re.match(r"\d+", rest).group(0)
        size = int(digits)
        parts.append(rest[len(digits):len(digits) + size])
        rest = rest[len(digits) + size:]
    return ".".join(parts)[:100] or name[:80]


def compiled_functions(dispatcher) -> list[tuple[int, int, str]]:
    """``(address, size, name)`` of every function in the JIT engine that compiled ``dispatcher``, by address."""
    symbols: dict[int, str] = {}
    for cres in dispatcher.overloads.values():
        engine = cres.library._codegen._engine
        for name in list(engine._defined_symbols):
            try:
                address = engine.get_function_address(name)
            except Exception:  # data symbols and the like
                continue
            if address:
                symbols[address] = name
    addresses = sorted(symbols)
    ends = [*addresses[1:], addresses[-1] + 4096] if addresses else []
    return [(a, min(e - a, 1 << 20), _short(symbols[a])) for a, e in zip(addresses, ends, strict=True)]


def write_perf_map(functions: list[tuple[int, int, str]]) -> Path:
    path = Path(f"/tmp/perf-{os.getpid()}.map")
    path.write_text("".join(f"{a:x} {size:x} {name}\n" for a, size, name in functions))
    return path


def dump_code(functions: list[tuple[int, int, str]], directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for address, size, name in functions:
        if name.startswith("kernels.") or "parfor_gufunc" in name:
            (directory / f"{name}@{address:x}.bin").write_bytes(ctypes.string_at(address, min(size, 1 << 16)))
            count += 1
    return count


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024, help="lattice side (default 1024)")
    ap.add_argument("--rules", choices=("full", "core"), default="full")
    ap.add_argument("--steps", type=int, default=300, help="timed steps after the warm-up (default 300)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dump", type=Path, default=None, help="directory for the machine code of kernels.* functions")
    args = ap.parse_args(argv)

    os.environ["CART_ABM_CACHE_DIR"] = tempfile.mkdtemp(prefix="cart-abm-profile-")
    import kernels
    from benchmarks.registry import config_for, scenario
    from kernels import cpu

    _, state, tables, n_cart, traffic = scenario(args.size, config_for("quick"), args.rules)
    lattice = kernels.Lattice(state, tables, backend="cpu", threads=args.threads)
    lattice.step(0, traffic)  # compiles
    functions = compiled_functions(cpu.step)
    print(f"{len(functions)} compiled functions -> {write_perf_map(functions)}")
    if args.dump:
        print(f"machine code of {dump_code(functions, args.dump)} functions -> {args.dump}/")
    start = time.perf_counter()
    for k in range(1, args.steps + 1):
        lattice.step(k, traffic)
    elapsed = time.perf_counter() - start
    print(f"{args.rules} {args.size}^2, {n_cart} CAR-T cells, {args.threads} thread(s): "
          f"{elapsed / args.steps * 1e3:.3f} ms/step over {args.steps} steps")


if __name__ == "__main__":
    main()
