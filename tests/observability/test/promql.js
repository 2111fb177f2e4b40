// What the suite reads out of the shipped dashboards and rules: every PromQL expression, where it comes from, and,
// parsed with Prometheus's own grammar (@prometheus-io/lezer-promql), the vector selectors it reads and the labels it
// groups or matches by — so a failure can name the metric or label that does not exist, not only "no data".
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { parser } from "@prometheus-io/lezer-promql";
import YAML from "yaml";
import { REPO } from "../../support/processes.js";

export const DASHBOARDS = path.join(REPO, "deploy/grafana/dashboards");
export const PROMETHEUS_DIR = path.join(REPO, "deploy/prometheus");

/**
 * Grafana's variables as the suite substitutes them: the built-in intervals, and the dashboards' own variables
 * (job: the suite's scrape job; instance: "All", which Grafana sends as the variable's allValue).
 */
export const VARIABLES = { __rate_interval: "1m", __interval: "15s", __range: "5m", job: "tessera", instance: ".*" };

/** `expr` with Grafana's variables ($name, ${name}, [[name]]) replaced; an unknown variable is left as it is. */
export function substitute(expr, variables = VARIABLES) {
  return expr.replace(/\$\{(\w+)\}|\[\[(\w+)\]\]|\$(\w+)/g, (whole, a, b, c) => variables[a ?? b ?? c] ?? whole);
}

/** Every dashboard: { file, json }. */
export async function loadDashboards() {
  const files = (await readdir(DASHBOARDS)).filter((file) => file.endsWith(".json")).sort();
  return Promise.all(files.map(async (file) => ({ file, json: JSON.parse(await readFile(path.join(DASHBOARDS, file), "utf8")) })));
}

/** Panels of a dashboard, those inside collapsed rows included. */
export function panelsOf(dashboard) {
  return (dashboard.panels ?? []).flatMap((panel) => [panel, ...(panel.panels ?? [])]);
}

/** Every query of every panel: { where, expr } ("file › panel title [refId]"). */
export function dashboardQueries(dashboards) {
  return dashboards.flatMap(({ file, json }) =>
    panelsOf(json).flatMap((panel) =>
      (panel.targets ?? []).map((target) => ({ where: `${file} › "${panel.title}" [${target.refId}]`, expr: target.expr }))));
}

/** The dashboards' query variables: { where, query } (a `label_values(...)` query). */
export function variableQueries(dashboards) {
  return dashboards.flatMap(({ file, json }) =>
    (json.templating?.list ?? []).filter((variable) => variable.type === "query").map((variable) => ({
      where: `${file} › variable $${variable.name}`,
      query: typeof variable.query === "string" ? variable.query : variable.query?.query,
    })));
}

/** `label_values(selector, label)` → { selector, label }; null for any other variable query. */
export function labelValuesQuery(query) {
  const match = /^\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*$/.exec(query ?? "");
  return match ? { selector: match[1], label: match[2] } : null;
}

/** The rule files prometheus.example.yml loads, as paths. */
export async function ruleFiles() {
  const config = YAML.parse(await readFile(path.join(PROMETHEUS_DIR, "prometheus.example.yml"), "utf8"));
  return (config.rule_files ?? []).map((file) => path.join(PROMETHEUS_DIR, file));
}

/** Every rule of the shipped rule files: { where, kind: "alert" | "record", name, expr, rule }. */
export async function loadRules() {
  const rules = [];
  for (const file of await ruleFiles()) {
    const { groups } = YAML.parse(await readFile(file, "utf8"));
    for (const group of groups) {
      for (const rule of group.rules) {
        const kind = rule.alert ? "alert" : "record";
        const name = rule.alert ?? rule.record;
        rules.push({ where: `${path.basename(file)} › ${group.name} › ${name}`, kind, name, expr: rule.expr, rule });
      }
    }
  }
  return rules;
}

function children(node) {
  const list = [];
  for (let child = node.firstChild; child; child = child.nextSibling) list.push(child);
  return list;
}

function descendants(node, name) {
  const found = [];
  const walk = (current) => {
    if (current.name === name) found.push(current);
    else children(current).forEach(walk);
  };
  walk(node);
  return found;
}

/**
 * Parses a PromQL expression. Returns:
 * - errors: where the grammar failed (an expression with any is reported as unparseable),
 * - selectors: the vector selectors read, as text (`metric{label="value"}`),
 * - groupings: each label list of by / without / on / ignoring / group_left / group_right, with the selectors of
 *   the operand(s) those labels must be found on: by/without in the aggregated expression; on on each side of
 *   the operator (both must have it); ignoring on either side; group_left/group_right on the "one" side, which
 *   the labels are copied from.
 */
export function analyse(expr) {
  const tree = parser.parse(expr);
  const text = (node) => expr.slice(node.from, node.to);
  const errors = [];
  tree.iterate({ enter: (node) => { if (node.type.isError) errors.push(node.from); } });
  const selectorsIn = (node) => descendants(node, "VectorSelector").map(text);
  const labelsOf = (node) => descendants(node, "LabelName").map(text);
  const groupings = [];
  tree.iterate({
    enter: (ref) => {
      const node = ref.node;
      if (node.name === "AggregateExpr") {
        const modifier = children(node).find((child) => child.name === "AggregateModifier");
        const body = children(node).find((child) => child.name === "FunctionCallBody");
        if (modifier && body) {
          const kind = children(modifier)[0].name === "By" ? "by" : "without";
          groupings.push({ kind, labels: labelsOf(modifier), selectors: [selectorsIn(body)] });
        }
      } else if (node.name === "BinaryExpr") {
        const parts = children(node);
        const clause = parts.find((child) => child.name === "MatchingModifierClause");
        if (!clause) return;
        const left = selectorsIn(parts[0]);
        const right = selectorsIn(parts.at(-1));
        const sides = [left, right].filter((side) => side.length > 0);
        const words = children(clause);
        for (let i = 0; i < words.length; i += 1) {
          const word = words[i];
          const labels = words[i + 1]?.name === "GroupingLabels" ? labelsOf(words[i + 1]) : [];
          if (labels.length === 0) continue;
          if (word.name === "On") groupings.push({ kind: "on", labels, selectors: sides });
          if (word.name === "Ignoring") groupings.push({ kind: "ignoring", labels, selectors: [[...left, ...right]] });
          if (word.name === "GroupLeft") groupings.push({ kind: "group_left", labels, selectors: [right] });
          if (word.name === "GroupRight") groupings.push({ kind: "group_right", labels, selectors: [left] });
        }
      }
    },
  });
  return { errors, selectors: [...new Set(selectorsIn(tree.topNode))], groupings };
}

/** The metric name of a vector selector's text (`foo{a="b"}` → foo). */
export function metricOf(selector) {
  return /^[A-Za-z_:][\w:]*/.exec(selector)?.[0] ?? selector;
}
