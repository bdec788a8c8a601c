#!/usr/bin/env python3
"""Checks that the SDK core's modules import downward only: builds the graph of
`crate::<module>` references between top-level modules of src/ (tests and the wasm
facade left out) and prints any cycle. Exit 1 on a cycle. Used by npm test."""
import os, re, sys

src = os.path.join(os.path.dirname(__file__), '..', 'src')
edges = {}
for root, _, files in os.walk(src):
    for f in files:
        if not f.endswith('.rs') or f == 'tests.rs':
            continue
        rel = os.path.relpath(os.path.join(root, f), src)
        top = rel.split(os.sep)[0].removesuffix('.rs')
        if top in ('lib', 'wasm'):
            continue
        text = re.sub(r'//[^\n]*', '', open(os.path.join(root, f)).read())
        cut = text.find('#[cfg(test)]')
        text = text if cut < 0 else text[:cut]
        for m in re.finditer(r'crate::([a-z_]+)', text):
            if m.group(1) != top:
                edges.setdefault(top, set()).add(m.group(1))

cycles = set()
def walk(node, path):
    for nxt in sorted(edges.get(node, ())):
        if nxt in path:
            cyc = path[path.index(nxt):]
            i = cyc.index(min(cyc))
            cycles.add(' -> '.join(cyc[i:] + cyc[:i] + [min(cyc)]))
        elif len(path) < 12:
            walk(nxt, path + [nxt])
for n in sorted(edges):
    walk(n, [n])
for c in sorted(cycles):
    print('cycle:', c)
print(f'layers: {len(edges)} modules, {len(cycles)} cycle(s)')
sys.exit(1 if cycles else 0)
