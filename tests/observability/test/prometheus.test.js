// Issue 19: a real Prometheus scrapes a real Tessera (two nodes on a Redis store) driven through logins, refreshes,
// a reuse, revocations, an exchange and a Redis outage, with the shipped rules loaded. Then every PromQL expression
// of every dashboard panel is evaluated and must return data; every rule must be healthy; and for dashboards and
// rules alike every vector selector must match a series and every label in by/without/on/ignoring/group_* must
// exist on what it groups. A failure names the dashboard panel or rule, and the metric or label that is missing.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { eventually } from "../../support/processes.js";
import {
  analyse, dashboardQueries, labelValuesQuery, loadDashboards, loadRules, metricOf, substitute, variableQueries,
} from "./promql.js";
import { Stack } from "./stack.js";

let stack;
let prometheus;
const started = Date.now() / 1000;

/** Prometheus's HTTP API: the `data` of a successful answer; fails with Prometheus's error otherwise. */
async function api(pathname, params) {
  const response = await fetch(`${prometheus.url}${pathname}?${new URLSearchParams(params)}`, { signal: AbortSignal.timeout(10_000) });
  const answer = await response.json();
  if (answer.status !== "success") throw new Error(`${answer.errorType}: ${answer.error}`);
  return answer.data;
}

const seriesCache = new Map();
/** The label sets of every series `selector` matched since the suite started. */
function series(selector) {
  if (!seriesCache.has(selector)) seriesCache.set(selector, api("/api/v1/series", { "match[]": selector, start: started }));
  return seriesCache.get(selector);
}

/** Why `selector` matches nothing: the metric does not exist at all, or no series of it has those labels. */
async function whyEmpty(selector) {
  const metric = metricOf(selector);
  const any = await series(metric).catch(() => []);
  return any.length === 0
    ? `metric ${metric} does not exist`
    : `no series of ${metric} matches ${selector} (its series have ${describeLabels(any)})`;
}

function describeLabels(list) {
  const values = {};
  for (const labels of list) {
    for (const [name, value] of Object.entries(labels)) {
      if (["__name__", "job", "instance"].includes(name)) continue;
      (values[name] ??= new Set()).add(value);
    }
  }
  const parts = Object.entries(values).map(([name, set]) => `${name}=${[...set].slice(0, 8).join("|")}`);
  return parts.length ? parts.join(", ") : "no labels but job and instance";
}

/** Problems of one expression's selectors and groupings (each a sentence naming `where`). */
async function selectorProblems(where, expr) {
  const { errors, selectors, groupings } = analyse(expr);
  if (errors.length > 0) return [`${where}: does not parse (at character ${errors[0]}): ${expr}`];
  const problems = [];
  for (const selector of selectors) {
    const found = await series(selector).catch((error) => error);
    if (found instanceof Error) problems.push(`${where}: Prometheus refused the selector ${selector}: ${found.message}`);
    else if (found.length === 0) problems.push(`${where}: ${await whyEmpty(selector)}`);
  }
  for (const { kind, labels, selectors: sides } of groupings) {
    for (const side of sides) {
      const found = (await Promise.all(side.map((selector) => series(selector).catch(() => [])))).flat();
      if (found.length === 0) continue;
      for (const label of labels) {
        if (!found.some((labelSet) => label in labelSet)) {
          problems.push(`${where}: label "${label}" in ${kind}(...) is on no series of ${side.join(", ")} (they have ${describeLabels(found)})`);
        }
      }
    }
  }
  return problems;
}

before(async () => {
  stack = await Stack.start();
  prometheus = stack.prometheus;
});

after(async () => {
  await stack?.close();
});

test("Prometheus scrapes every node and loads every shipped rule without an error", { timeout: 120_000 }, async () => {
  const session = await stack.drive();
  await stack.outage(session);
  const trafficDone = Date.now() / 1000;

  // Enough scrapes after the traffic for every rate over it, and a rule evaluation over those scrapes.
  await eventually("a few scrapes of every node after the traffic", async () => {
    const result = await api("/api/v1/query", { query: 'timestamp(up{job="tessera"} == 1)' });
    return result.result.length === Object.keys(stack.nodes).length && result.result.every((sample) => Number(sample.value[1]) > trafficDone + 3);
  }, { timeout: 30_000, interval: 500 });
  const loaded = await eventually("every rule to be evaluated after the traffic", async () => {
    const { groups } = await api("/api/v1/rules", {});
    const rules = groups.flatMap((group) => group.rules.map((rule) => ({ ...rule, group: group.name, file: group.file })));
    return rules.every((rule) => Date.parse(rule.lastEvaluation) / 1000 > trafficDone + 3) && rules;
  }, { timeout: 30_000, interval: 500 });

  const shipped = await loadRules();
  assert.deepEqual(loaded.map((rule) => rule.name).sort(), shipped.map((rule) => rule.name).sort(), "Prometheus loaded exactly the shipped rules");
  const unhealthy = loaded.filter((rule) => rule.health !== "ok").map((rule) => `${rule.group} › ${rule.name}: ${rule.health} ${rule.lastError ?? ""}`);
  assert.deepEqual(unhealthy, [], `rules Prometheus could not evaluate:\n${unhealthy.join("\n")}`);
});

test("every dashboard query returns data, and reads only metrics and labels that exist", { timeout: 60_000 }, async () => {
  const dashboards = await loadDashboards();
  const problems = [];
  for (const { where, query } of variableQueries(dashboards)) {
    const parsed = labelValuesQuery(query);
    if (!parsed) {
      problems.push(`${where}: not a label_values(selector, label) query: ${query}`);
      continue;
    }
    const selector = substitute(parsed.selector);
    const found = await series(selector).catch(() => []);
    if (!found.some((labels) => parsed.label in labels)) problems.push(`${where}: no series of ${selector} has label "${parsed.label}"`);
  }
  for (const { where, expr } of dashboardQueries(dashboards)) {
    const query = substitute(expr);
    const found = await selectorProblems(where, query);
    problems.push(...found);
    if (found.length > 0) continue;
    const result = await api("/api/v1/query", { query }).catch((error) => error);
    if (result instanceof Error) problems.push(`${where}: Prometheus refused the query: ${result.message}: ${query}`);
    else if (result.result.length === 0) problems.push(`${where}: returned no data: ${query}`);
  }
  assert.deepEqual(problems, [], `dashboard queries that fail:\n${problems.join("\n")}`);
});

test("every rule reads only metrics and labels that exist, and every recording rule records data", { timeout: 60_000 }, async () => {
  const problems = [];
  for (const rule of await loadRules()) {
    problems.push(...await selectorProblems(rule.where, rule.expr));
    if (rule.kind === "record") {
      const { result } = await api("/api/v1/query", { query: rule.name });
      if (result.length === 0) problems.push(`${rule.where}: recorded no series`);
    }
  }
  assert.deepEqual(problems, [], `rules that read what does not exist:\n${problems.join("\n")}`);
});

test("the checks above can fail: a missing metric, series and label are each named", { timeout: 30_000 }, async () => {
  const problems = [
    ...await selectorProblems("probe", "sum(rate(tessera_no_such_metric_total[1m]))"),
    ...await selectorProblems("probe", 'tessera_refresh_total{outcome="no_such_outcome"}'),
    ...await selectorProblems("probe", "sum by (no_such_label) (rate(tessera_http_requests_total[1m]))"),
  ];
  assert.equal(problems.length, 3, problems.join("\n"));
  assert.match(problems[0], /^probe: metric tessera_no_such_metric_total does not exist$/);
  assert.match(problems[1], /^probe: no series of tessera_refresh_total matches .*no_such_outcome.* \(its series have outcome=/);
  assert.match(problems[2], /^probe: label "no_such_label" in by\(\.\.\.\) is on no series of tessera_http_requests_total/);
});
