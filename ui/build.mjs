// Builds the UI into dist/: one bundled, minified script and stylesheet
// and index.html. No inline script anywhere: the node serves the UI with
// a Content-Security-Policy that forbids it. Each file is written to a
// temporary name and renamed into place, so a test binary compiled during
// a build embeds either the old file or the new one, never half of one.
import * as esbuild from "esbuild";
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename } from "node:path";

mkdirSync("dist", { recursive: true });
const result = await esbuild.build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  minify: true,
  sourcemap: false,
  target: ["chrome120", "firefox120", "safari17"],
  outdir: "dist",
  write: false,
  logLevel: "warning",
});
const files = new Map(result.outputFiles.map((f) => [basename(f.path), f.contents]));
files.set("index.html", readFileSync("src/index.html"));
files.set("favicon.svg", readFileSync("src/favicon.svg"));
for (const [name, contents] of files) {
  const tmp = `dist/.${name}.${process.pid}.tmp`;
  writeFileSync(tmp, contents);
  renameSync(tmp, `dist/${name}`);
}
for (const f of readdirSync("dist")) {
  if (f !== ".gitkeep" && !files.has(f) && !f.endsWith(".tmp")) rmSync(`dist/${f}`, { recursive: true });
}
console.log(`ui: built dist/ (${[...files.keys()].join(", ")})`);
