// Prints a Markdown table from a JSON file holding {"machine":..., "rows":[...]}.
//   node table.js FILE '[["title","key.path"], ...]'
const fs = require("fs");
const doc = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const cols = JSON.parse(process.argv[3]);
const get = (o, path) => path.split(".").reduce((a, k) => (a == null ? a : a[k]), o);
const fmt = (v) => {
  if (v === undefined || v === null) return "-";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return v.toLocaleString("en-US");
    return Math.abs(v) >= 100 ? Math.round(v).toLocaleString("en-US") : v.toFixed(2);
  }
  return String(v);
};
console.log("| " + cols.map((c) => c[0]).join(" | ") + " |");
console.log("|" + cols.map(() => " --- ").join("|") + "|");
for (const row of doc.rows) console.log("| " + cols.map((c) => fmt(get(row, c[1]))).join(" | ") + " |");
