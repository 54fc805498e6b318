// Verdicts of the generated Zod schemas: node verdicts.mjs COMPILED_DIR CASES_JSON.
// Each case is {component, event_type, version, instance}; prints a JSON list with one
// {valid, error} per case.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [dir, casesFile] = process.argv.slice(2);
const cases = JSON.parse(readFileSync(casesFile, "utf8"));
const modules = {};
const out = [];
for (const c of cases) {
  modules[c.component] ??= await import(pathToFileURL(resolve(dir, `${c.component}.js`)).href);
  const schema = modules[c.component].EVENTS[`${c.event_type}@${c.version}`];
  const result = schema.safeParse(c.instance);
  out.push({ valid: result.success, error: result.success ? "" : JSON.stringify(result.error.issues[0]) });
}
console.log(JSON.stringify(out));
