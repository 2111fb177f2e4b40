// Issue 19: the shipped Prometheus rules pass `promtool check rules`, and `promtool test rules` runs their unit tests
// (deploy/prometheus/tests/), which must cover every alert both firing and not firing.
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import YAML from "yaml";
import { program, run } from "../../support/processes.js";
import { PROMETHEUS_DIR, loadRules, ruleFiles } from "./promql.js";

const TESTS_DIR = path.join(PROMETHEUS_DIR, "tests");

async function unitTestFiles() {
  return (await readdir(TESTS_DIR)).filter((file) => file.endsWith(".test.yml")).sort().map((file) => path.join(TESTS_DIR, file));
}

test("prometheus.example.yml loads every rule file in deploy/prometheus, and promtool accepts them", async () => {
  const files = await ruleFiles();
  const present = (await readdir(PROMETHEUS_DIR)).filter((file) => file.endsWith(".yml") && file !== "prometheus.example.yml");
  assert.deepEqual(files.map((file) => path.basename(file)).sort(), present.sort());
  const checked = await run(program("promtool"), ["check", "rules", ...files]);
  assert.equal(checked.code, 0, `promtool check rules:\n${checked.stdout}\n${checked.stderr}`);
  const config = await run(program("promtool"), ["check", "config", path.join(PROMETHEUS_DIR, "prometheus.example.yml")]);
  assert.equal(config.code, 0, `promtool check config:\n${config.stdout}\n${config.stderr}`);
});

test("every alert has a severity and a runbook", async () => {
  const alerts = (await loadRules()).filter((rule) => rule.kind === "alert");
  assert.ok(alerts.length > 0);
  for (const { where, rule } of alerts) {
    assert.match(rule.labels?.severity ?? "", /^(page|ticket)$/, `${where}: severity`);
    assert.ok((rule.annotations?.runbook ?? "").length > 40, `${where}: a runbook annotation saying what it means and what to do first`);
  }
});

test("promtool test rules: the unit tests pass", { timeout: 60_000 }, async () => {
  const files = await unitTestFiles();
  assert.ok(files.length > 0, `no unit tests in ${TESTS_DIR}`);
  const result = await run(program("promtool"), ["test", "rules", ...files], { timeout: 60_000 });
  assert.equal(result.code, 0, `promtool test rules:\n${result.stdout}\n${result.stderr}`);
});

test("the unit tests cover every alert, both firing and not firing", async () => {
  const seen = new Map();
  for (const file of await unitTestFiles()) {
    const { tests } = YAML.parse(await readFile(file, "utf8"));
    for (const group of tests) {
      for (const check of group.alert_rule_test ?? []) {
        const cases = seen.get(check.alertname) ?? { firing: false, quiet: false };
        if ((check.exp_alerts ?? []).length > 0) cases.firing = true;
        else cases.quiet = true;
        seen.set(check.alertname, cases);
      }
    }
  }
  const alerts = (await loadRules()).filter((rule) => rule.kind === "alert").map((rule) => rule.name);
  const missing = alerts.flatMap((name) => {
    const cases = seen.get(name) ?? {};
    return [...(cases.firing ? [] : [`${name}: no case where it fires`]), ...(cases.quiet ? [] : [`${name}: no case where it does not fire`])];
  });
  assert.deepEqual(missing, []);
  const unknown = [...seen.keys()].filter((name) => !alerts.includes(name));
  assert.deepEqual(unknown, [], "unit tests name alerts that do not exist");
});
