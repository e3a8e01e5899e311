// Fails when src/api/schema.d.ts is not what `npm run gen` would write from ../gen/socialmesh/openapi.json.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "sm-gen-"));
const fresh = join(dir, "schema.d.ts");
execFileSync(
  process.execPath,
  ["node_modules/openapi-typescript/bin/cli.js", "../gen/socialmesh/openapi.json", "-o", fresh],
  { stdio: ["ignore", "ignore", "inherit"] },
);
const committed = readFileSync("src/api/schema.d.ts", "utf8");
if (readFileSync(fresh, "utf8") !== committed) {
  console.error("src/api/schema.d.ts is out of date with gen/socialmesh/openapi.json: run `npm run gen`");
  process.exit(1);
}
console.log("src/api/schema.d.ts is up to date");
