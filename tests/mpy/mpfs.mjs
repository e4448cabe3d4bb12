// Shared by run.mjs (the tests) and heap.mjs (the heap bench): how the
// repository's MicroPython code goes into the interpreter's in-memory file
// system. Under /lib (on sys.path): protocol/ (its .py files and
// vectors.json), firmware/ (its .py files, but not firmware/tools/, which runs
// on a PC) and the .py files of tests/mpy/ (flat, so `import mpyunit` works).
// Run from the repository root.

import fs from "node:fs";
import path from "node:path";

export const ROOT = process.cwd();
export const LIB = "/lib";

export function walk(dir, keep, skipDirs = new Set()) {
  const out = [];
  const abs = path.join(ROOT, dir);
  if (!fs.existsSync(abs)) return out;
  for (const entry of fs.readdirSync(abs, { withFileTypes: true })) {
    const rel = path.posix.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!skipDirs.has(rel) && entry.name !== "__pycache__") out.push(...walk(rel, keep, skipDirs));
    } else if (keep(entry.name)) {
      out.push(rel);
    }
  }
  return out.sort();
}

// Copy one repository file (rel) to dest in the interpreter's file system.
export function install(mp, rel, dest) {
  mp.FS.mkdirTree(path.posix.dirname(dest));
  mp.FS.writeFile(dest, fs.readFileSync(path.join(ROOT, rel)));
}

// protocol/, firmware/ (minus firmware/tools/) and tests/mpy/*.py into /lib.
export function installLib(mp) {
  const py = (name) => name.endsWith(".py");
  for (const rel of [
    ...walk("protocol", (name) => py(name) || name === "vectors.json"),
    ...walk("firmware", py, new Set(["firmware/tools"])),
  ]) {
    install(mp, rel, path.posix.join(LIB, rel));
  }
  for (const rel of walk("tests/mpy", (name) => py(name) && name !== "conftest.py")) {
    install(mp, rel, path.posix.join(LIB, path.posix.basename(rel)));
  }
}
