#!/usr/bin/env node
// Per-crate breakdown of the core wasm's code, from the names section of cargo's output
// (before wasm-bindgen and wasm-opt, which drop the names): every function body is
// attributed to the crate its (legacy-mangled) Rust name starts with; `<T as Trait>::f`
// and `drop_in_place<T>` go to T's crate (monomorphized code is counted where the type
// lives, as cargo-bloat does). Sizes are raw code bytes and gzip -9 of each crate's bodies
// concatenated; wasm-opt shrinks all of them afterwards, so read the shares, not the bytes.
//
//   node bench/wasm-crates.mjs [path/to/sandrun_wasm.wasm] [--top 15] [--features]
// Used by bench/goals.mjs to say what stands in the way of the download-size goal.
import { existsSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The cargo output the package's wasm is built from (scripts/build.mjs). */
export function cargoWasmPath() {
  return join(process.env.CARGO_TARGET_DIR || join(root, 'target'), 'wasm32-unknown-unknown/wasm/sandrun_wasm.wasm');
}

function sections(b) {
  let p = 8;
  const leb = () => {
    let r = 0, s = 0, x;
    do { x = b[p++]; r += (x & 0x7f) * 2 ** s; s += 7; } while (x & 0x80);
    return r;
  };
  const out = [];
  while (p < b.length) {
    const id = b[p++];
    const n = leb();
    const start = p;
    let name = '';
    if (id === 0) { const l = leb(); name = b.subarray(p, p + l).toString(); }
    out.push({ id, name, start, end: start + n, bodyStart: p });
    p = start + n;
  }
  return { out, reader: (pos) => { p = pos; return { leb, pos: () => p, set: (q) => { p = q; } }; } };
}

/** The crate a legacy-mangled (or plain) function name belongs to. */
export function crateOf(name) {
  let s = name;
  if (s.startsWith('_ZN')) {
    const m = /^_ZN(\d+)/.exec(s);
    if (m) {
      const len = Number(m[1]);
      const first = s.slice(3 + m[1].length, 3 + m[1].length + len);
      // <T as Trait> / <&mut T as Trait> / <[T]>: T's crate
      const inner = /^_?\$LT\$(?:\$RF\$|\$BP\$|\$u5b\$|\$LP\$|mut\$u20\$|const\$u20\$|dyn\$u20\$)*([A-Za-z_][A-Za-z0-9_]*)/.exec(first);
      if (inner) return inner[1];
      if (first === 'core' && s.includes('drop_in_place$LT$')) {
        const t = /drop_in_place\$LT\$(?:\$RF\$|\$BP\$|\$u5b\$|\$LP\$)*([A-Za-z_][A-Za-z0-9_]*)/.exec(s);
        if (t) return `${t[1]}`;
      }
      return first;
    }
  }
  // v0 mangling (the precompiled std, core, alloc and dlmalloc use it): the innermost path
  // root is the first crate-root production, `C` [`s` disambiguator `_`] length name.
  if (s.startsWith('_R')) {
    const m = /C(?:s[0-9A-Za-z]*_)?(\d+)([A-Za-z_][A-Za-z0-9_]*)/.exec(s.slice(2));
    if (m) {
      const c = m[2].slice(0, Number(m[1]));
      return c === '__rustc' ? '(allocator/runtime)' : c;
    }
  }
  if (s.startsWith('__wbg_') || s.startsWith('__wbindgen') || s.startsWith('__externref')) return '(wasm-bindgen glue)';
  if (/^(dlmalloc|__rust|__rdl|__rg_|rust_)/.test(s)) return '(allocator/runtime)';
  if (/^(mem|str|__)/.test(s)) return '(compiler-builtins)';
  return '(#[wasm_bindgen] export shims)';
}

// Crates only the optional features pull in (cargo tree -i, wasm32 target): IPFS (CIDs,
// multibase, DAG-PB, CAR), and the wallet and payments (alloy, k256 ECDSA, RLP).
const IPFS_CRATES = new Set(['cid', 'multibase', 'data_encoding', 'base_x', 'base256emoji', 'multihash', 'ipld_dagpb', 'quick_protobuf', 'iroh_car', 'cbor4ii', 'serde_ipld_dagcbor', 'unsigned_varint', 'ipld_core', 'core2']);
const CHAIN_CRATES = new Set(['alloy_signer', 'alloy_signer_local', 'alloy_consensus', 'alloy_eips', 'alloy_rlp', 'alloy_eip2930', 'alloy_eip7702', 'alloy_serde', 'alloy_primitives', 'alloy_sol_types', 'alloy_json_abi', 'k256', 'ecdsa', 'elliptic_curve', 'crypto_bigint', 'der', 'rfc6979', 'hmac', 'sec1', 'primeorder', 'ruint', 'const_hex', 'sha3', 'keccak', 'nybbles']);
const FEATURE_OF_MODULE = { ipfs: 'IPFS', node: 'provider node', chain: 'wallet and payments', wallet: 'wallet and payments', gpu: 'GPU facade' };

/**
 * The optional feature a function belongs to, or 'core': by the SDK module in its name
 * (src/ipfs, src/node, src/chain, src/gpu and their src/wasm facades, also inside generic
 * code monomorphized for their types), else by a crate only that feature uses.
 */
export function featureOf(name) {
  const mods = [];
  for (const m of name.matchAll(/12sandrun_wasm(?:4wasm)?(\d+)([A-Za-z_0-9]+)/g)) mods.push(m[2].slice(0, Number(m[1])));
  for (const m of name.matchAll(/sandrun_wasm\.\.(?:wasm\.\.)?([A-Za-z_]+)/g)) mods.push(m[1]);
  for (const m of mods) if (FEATURE_OF_MODULE[m]) return FEATURE_OF_MODULE[m];
  const c = crateOf(name);
  if (IPFS_CRATES.has(c)) return 'IPFS';
  if (CHAIN_CRATES.has(c)) return 'wallet and payments';
  return 'core';
}

/** { total, crates: [{ crate, bytes, gzip, functions }] } sorted by bytes, largest first;
 * `classify` names each function's group (by default its crate). */
export function breakdown(path = cargoWasmPath(), classify = crateOf) {
  const b = readFileSync(path);
  const { out, reader } = sections(b);
  const imports = out.find((s) => s.id === 2);
  let importedFuncs = 0;
  if (imports) {
    const r = reader(imports.start);
    const n = r.leb();
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < 2; k++) { const l = r.leb(); r.set(r.pos() + l); }
      const kind = b[r.pos()]; r.set(r.pos() + 1);
      if (kind === 0) { r.leb(); importedFuncs++; }
      else if (kind === 1) { r.set(r.pos() + 1); const f = r.leb(); r.leb(); if (f & 1) r.leb(); }
      else if (kind === 2) { const f = r.leb(); r.leb(); if (f & 1) r.leb(); }
      else if (kind === 3) { r.set(r.pos() + 2); }
      else if (kind === 4) { r.set(r.pos() + 1); r.leb(); }
    }
  }
  const names = new Map();
  const nameSec = out.find((s) => s.id === 0 && s.name === 'name');
  if (!nameSec) throw new Error(`${path} has no names section`);
  {
    const r = reader(nameSec.bodyStart);
    r.set(nameSec.bodyStart);
    // skip the custom section's own name
    const r2 = reader(nameSec.start); const l = r2.leb(); r2.set(r2.pos() + l);
    while (r2.pos() < nameSec.end) {
      const sub = b[r2.pos()]; r2.set(r2.pos() + 1);
      const size = r2.leb();
      const end = r2.pos() + size;
      if (sub === 1) {
        const n = r2.leb();
        for (let i = 0; i < n; i++) {
          const idx = r2.leb();
          const len = r2.leb();
          names.set(idx, b.subarray(r2.pos(), r2.pos() + len).toString());
          r2.set(r2.pos() + len);
        }
      }
      r2.set(end);
    }
  }
  const code = out.find((s) => s.id === 10);
  const r = reader(code.start);
  const count = r.leb();
  const groups = new Map();
  let total = 0;
  for (let i = 0; i < count; i++) {
    const size = r.leb();
    const start = r.pos();
    r.set(start + size);
    const name = names.get(importedFuncs + i) ?? '';
    // wasm-bindgen removes its describe functions from the shipped module.
    if (name.startsWith('__wbindgen_describe')) continue;
    const crate = classify(name);
    const g = groups.get(crate) ?? { crate, bytes: 0, bodies: [], functions: 0 };
    g.bytes += size;
    g.functions++;
    g.bodies.push(b.subarray(start, start + size));
    groups.set(crate, g);
    total += size;
  }
  const crates = [...groups.values()]
    .map((g) => ({ crate: g.crate, bytes: g.bytes, gzip: gzipSync(Buffer.concat(g.bodies), { level: 9 }).length, functions: g.functions }))
    .sort((a, b2) => b2.bytes - a.bytes);
  const data = out.find((s) => s.id === 11);
  return { path, total, data: data ? data.end - data.start : 0, crates };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const path = process.argv[2] && !process.argv[2].startsWith('--') ? process.argv[2] : cargoWasmPath();
  const i = process.argv.indexOf('--top');
  const top = i > 0 ? Number(process.argv[i + 1]) : 20;
  if (!existsSync(path)) { console.error(`${path} is missing: run node scripts/build.mjs`); process.exit(1); }
  if (process.argv.includes('--features')) {
    const f = breakdown(path, featureOf);
    const gz = f.crates.reduce((a, c) => a + c.gzip, 0);
    console.log('| feature | code KiB | gzip -9 KiB | share of gzip | functions |');
    console.log('| --- | ---: | ---: | ---: | ---: |');
    for (const c of f.crates) console.log(`| ${c.crate} | ${(c.bytes / 1024).toFixed(1)} | ${(c.gzip / 1024).toFixed(1)} | ${((c.gzip / gz) * 100).toFixed(1)}% | ${c.functions} |`);
    process.exit(0);
  }
  const r = breakdown(path);
  console.log(`${path}: code ${(r.total / 1024).toFixed(1)} KiB in functions, data ${(r.data / 1024).toFixed(1)} KiB (before wasm-opt)`);
  console.log('| crate | code KiB | share | gzip -9 KiB | functions |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  for (const c of r.crates.slice(0, top)) {
    console.log(`| ${c.crate} | ${(c.bytes / 1024).toFixed(1)} | ${((c.bytes / r.total) * 100).toFixed(1)}% | ${(c.gzip / 1024).toFixed(1)} | ${c.functions} |`);
  }
}
