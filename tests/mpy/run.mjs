// Run the MicroPython test files on real MicroPython (the v1.27 WebAssembly
// port from npm), each in a fresh interpreter in its own Node process.
//
//   node tests/mpy/run.mjs                       every tests/mpy/test_*.py
//   node tests/mpy/run.mjs tests/mpy/test_x.py   just these
//
// Run from the repository root. Into the interpreter's in-memory file system,
// under /lib (on sys.path), go: protocol/ (its .py files and vectors.json),
// firmware/ (its .py files, but not firmware/tools/, which runs on a PC) and
// the .py files of tests/mpy/, so `import protocol.wire`,
// `import firmware.core.x` and `import mpyunit` work as on a board.
// tests/mpy/mpyunit.py collects and runs the tests (see its header for async
// tests and what this port's asyncio lacks).
//
// One child process per file: tasks or timers a test leaves behind cannot
// leak into the next file, and a file stuck in a loop is killed at the
// timeout. Output: PASS/FAIL lines, one memory line per file, and last
// exactly one line `micropython: N passed, M failed`. Exit status 1 when a
// test failed, a file failed to import or timed out, or no test was found.
//
// Environment: MPY_HEAP (initial heap in bytes; the port grows it on demand)
// and MPY_TIMEOUT_S (per file, default 120).

import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { install as installFile, installLib, LIB, ROOT, walk } from "./mpfs.mjs";

const HEAP = Number(process.env.MPY_HEAP || 1024 * 1024);
const TIMEOUT_S = Number(process.env.MPY_TIMEOUT_S || 120);
const SUMMARY = "@@mpyunit ";

// -- child: one test file in one interpreter ---------------------------------------

async function child(file) {
  const { loadMicroPython } = await import("@micropython/micropython-webassembly-pyscript");
  const print = (line) => process.stdout.write(`${line}\n`);
  const mp = await loadMicroPython({ heapsize: HEAP, stdout: print, stderr: print });
  installLib(mp);
  installFile(mp, file, path.posix.join(LIB, path.posix.basename(file)));
  const module = path.basename(file, ".py");
  let summary;
  try {
    await mp.runPythonAsync(`import mpyunit\n_result = await mpyunit.run(${JSON.stringify(module)})\n`);
    summary = mp.globals.get("_result");
  } catch (err) {
    const last = String(err.message || err).trim().split("\n").slice(-1)[0];
    print(`FAIL ${file}: ${last}`);
    summary = JSON.stringify({ passed: 0, failed: 0, import_error: last });
  }
  print(SUMMARY + summary);
  process.exit(0); // whatever tasks the tests left running end here
}

// -- parent: spawn a child per file, relay its output, add up ------------------------

function kib(n) {
  return `${(n / 1024).toFixed(1)} KiB`;
}

function runFile(file) {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), "--child", file], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let result = null;
    let pending = "";
    const relay = (chunk) => {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop();
      for (const line of lines) {
        if (line.startsWith(SUMMARY)) result = JSON.parse(line.slice(SUMMARY.length));
        else console.log(line);
      }
    };
    proc.stdout.setEncoding("utf8").on("data", relay);
    proc.stderr.setEncoding("utf8").on("data", relay);
    const timer = setTimeout(() => {
      console.log(`FAIL ${file}: timed out after ${TIMEOUT_S} s`);
      proc.kill("SIGKILL");
    }, TIMEOUT_S * 1000);
    proc.on("close", (code) => {
      clearTimeout(timer);
      if (pending) relay("\n");
      if (!result || result.import_error) {
        if (!result) console.log(`FAIL ${file}: interpreter exited (status ${code}) without a result`);
        resolve({ passed: 0, failed: 0, broken: true });
        return;
      }
      console.log(
        `mem ${path.basename(file, ".py")}: module ${kib(result.module_bytes)} after import, ` +
          `largest test allocation ${kib(result.peak_test_bytes)} (${result.peak_test || "-"}), ` +
          `heap in use after ${kib(result.heap_after)}`,
      );
      resolve(result);
    });
  });
}

async function parent(args) {
  const files = args.length
    ? args.map((f) => path.relative(ROOT, path.resolve(f)).split(path.sep).join("/"))
    : walk("tests/mpy", (name) => /^test_.*\.py$/.test(name));
  let passed = 0;
  let failed = 0;
  for (const file of files) {
    console.log(`== ${file}`);
    if (!fs.existsSync(path.join(ROOT, file))) {
      console.log(`FAIL ${file}: no such file`);
      failed += 1;
      continue;
    }
    const r = await runFile(file);
    passed += r.passed;
    failed += r.failed + (r.broken ? 1 : 0);
  }
  if (passed + failed === 0) console.log("no MicroPython tests found under tests/mpy/");
  console.log(`micropython: ${passed} passed, ${failed} failed`);
  process.exitCode = failed > 0 || passed + failed === 0 ? 1 : 0;
}

const argv = process.argv.slice(2);
if (argv[0] === "--child") await child(argv[1]);
else await parent(argv);
