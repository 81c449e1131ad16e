// Builds the web console into dist/ (index.html, app.js, app.css), which the daemon
// embeds at compile time (daemon/build.rs). Run by scripts/lib.sh's build_console.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: ["src/main.jsx"],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  jsx: "automatic",
  define: { "process.env.NODE_ENV": '"production"' },
  outfile: "dist/app.js",
  legalComments: "none",
  logLevel: "warning",
});
// The chat components' stylesheet, then the console's own.
const css = [
  readFileSync("node_modules/@21st-sdk/react/dist/styles.css", "utf8"),
  readFileSync("src/console.css", "utf8"),
].join("\n");
writeFileSync("dist/app.css", css);
copyFileSync("src/index.html", "dist/index.html");
