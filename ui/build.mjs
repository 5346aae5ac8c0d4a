// Builds the UI into dist/: one bundled, minified script and stylesheet
// and index.html. No inline script anywhere: the node serves the UI with
// a Content-Security-Policy that forbids it.
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";

for (const f of readdirSync("dist")) {
  if (f !== ".gitkeep") rmSync(`dist/${f}`, { recursive: true });
}
mkdirSync("dist", { recursive: true });
await esbuild.build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  minify: true,
  sourcemap: false,
  target: ["chrome120", "firefox120", "safari17"],
  outdir: "dist",
  logLevel: "warning",
});
copyFileSync("src/index.html", "dist/index.html");
console.log("ui: built dist/ (main.js, main.css, index.html)");
