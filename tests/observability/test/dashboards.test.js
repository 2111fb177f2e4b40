// Issue 19: the Grafana dashboards are importable as they are (schema, a Prometheus data-source variable, unique
// ids, a sane grid) and their queries are written the way the live test checks them: parseable PromQL, rates over
// $__rate_interval, every selector scoped to the chosen job and node. prometheus.test.js then runs every query.
import assert from "node:assert/strict";
import { test } from "node:test";
import { analyse, dashboardQueries, loadDashboards, panelsOf, substitute } from "./promql.js";

const DATASOURCE = { type: "prometheus", uid: "${datasource}" };

test("every dashboard is a Grafana dashboard with a Prometheus data-source variable and unique ids", async () => {
  const dashboards = await loadDashboards();
  const expected = ["tessera-keys.json", "tessera-overview.json", "tessera-revocation.json", "tessera-security.json", "tessera-tokens.json"];
  assert.deepEqual(dashboards.map(({ file }) => file), expected);
  const uids = new Set();
  for (const { file, json } of dashboards) {
    assert.equal(json.schemaVersion, 39, `${file}: schemaVersion`);
    assert.ok(json.uid && !uids.has(json.uid), `${file}: a unique uid`);
    uids.add(json.uid);
    assert.match(json.title, /^Tessera \/ /, `${file}: title`);
    const variables = Object.fromEntries(json.templating.list.map((variable) => [variable.name, variable]));
    assert.equal(variables.datasource?.type, "datasource", `${file}: $datasource variable`);
    assert.equal(variables.datasource.query, "prometheus", `${file}: $datasource lists Prometheus data sources`);
    for (const name of ["job", "instance"]) assert.deepEqual(variables[name]?.datasource, DATASOURCE, `${file}: $${name} variable`);
    const ids = new Set();
    for (const panel of panelsOf(json)) {
      assert.ok(!ids.has(panel.id), `${file}: panel id ${panel.id} is used twice`);
      ids.add(panel.id);
      const { x, w } = panel.gridPos;
      assert.ok(x >= 0 && w > 0 && x + w <= 24, `${file} › "${panel.title}": inside the 24-column grid`);
      if (panel.type === "row") continue;
      assert.ok(panel.targets?.length > 0, `${file} › "${panel.title}": queries`);
      assert.deepEqual(panel.datasource, DATASOURCE, `${file} › "${panel.title}": data source`);
      for (const target of panel.targets) assert.deepEqual(target.datasource, DATASOURCE, `${file} › "${panel.title}" [${target.refId}]: data source`);
    }
  }
});

test("every query parses, rates over $__rate_interval (or $__range), and reads only the chosen job's series", async () => {
  const problems = [];
  for (const { where, expr } of dashboardQueries(await loadDashboards())) {
    for (const [, range] of expr.matchAll(/\[([^\]]*)\]/g)) {
      if (!["$__rate_interval", "$__range"].includes(range)) problems.push(`${where}: range [${range}] (use $__rate_interval)`);
    }
    const { errors, selectors } = analyse(substitute(expr));
    if (errors.length > 0) problems.push(`${where}: does not parse: ${expr}`);
    // Selectors of the substituted text: the job variable became "tessera".
    for (const selector of selectors) if (!selector.includes('job="tessera"')) problems.push(`${where}: ${selector} is not scoped to job="$job"`);
  }
  assert.deepEqual(problems, []);
});
