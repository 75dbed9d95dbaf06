// Verdict's web UI: the playground's form and answers. Text only ever reaches the page through
// textContent (never innerHTML): what a person types and what the set says are never markup.
"use strict";

// The matrix: show only the classes whose label or id holds what is typed.
(function () {
  const input = document.getElementById("class-filter");
  if (!input) return;
  input.addEventListener("input", () => {
    const wanted = input.value.trim().toLowerCase();
    for (const row of document.querySelectorAll("table.matrix tbody tr")) {
      const text = (row.dataset.class + " " + row.cells[0].textContent).toLowerCase();
      row.hidden = wanted !== "" && !text.includes(wanted);
    }
  });
})();

// The playground.
(function () {
  const builder = document.getElementById("builder");
  if (!builder) return;
  const field = (name) => builder.elements[name];
  const request = document.getElementById("request");
  const error = document.getElementById("error");

  function show(el, text) {
    el.textContent = text;
    el.hidden = !text;
  }

  function list(text, separator) {
    return text.split(separator).map((s) => s.trim()).filter((s) => s.length > 0);
  }

  function parsed(name) {
    const text = field(name).value.trim();
    if (text === "") return {};
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new Error(name.replace("_", " ") + " is not JSON: " + e.message);
    }
  }

  function fillActions() {
    const option = field("kind").selectedOptions[0];
    const actions = option ? list(option.dataset.actions || "", " ") : [];
    const select = field("action");
    const kept = select.value;
    select.replaceChildren(...actions.map((a) => new Option(a, a)));
    if (actions.includes(kept)) select.value = kept;
  }

  // The form, as the JSON body of a Check.
  function build() {
    try {
      const body = {
        principal: {
          id: field("principal_id").value.trim(),
          roles: list(field("roles").value, ","),
          scopes: list(field("scopes").value, /\s+/),
          capabilities: list(field("capabilities").value, ","),
          attr: parsed("principal_attr"),
        },
        resources: [{
          resource: { kind: field("kind").value, id: field("resource_id").value.trim(), attr: parsed("resource_attr") },
          actions: field("action").value ? [field("action").value] : [],
        }],
        context: parsed("context"),
        explain: true,
      };
      request.value = JSON.stringify(body, null, 2);
      show(error, "");
    } catch (e) {
      show(error, e.message);
    }
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    let answer;
    try {
      answer = await response.json();
    } catch (e) {
      throw new Error("HTTP " + response.status + ": the answer is not JSON");
    }
    if (!response.ok) {
      throw new Error((answer.code || "HTTP " + response.status) + ": " + (answer.message || ""));
    }
    return answer;
  }

  function cell(row, text, className) {
    const td = row.insertCell();
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function ruleCell(row, decision) {
    const td = row.insertCell();
    if (!decision.rule) {
      td.textContent = "(default deny)";
      td.className = "muted";
      return;
    }
    td.appendChild(ruleLink(decision));
  }

  // `policy/rule`, a link to where it is written when the server gave its location.
  function ruleLink(named) {
    const name = named.policy + "/" + named.rule;
    if (!named.location) return document.createTextNode(name);
    const a = document.createElement("a");
    a.href = named.location;
    a.textContent = name;
    return a;
  }

  // TRACE_OUTCOME_NOT_HELD -> "not held".
  function words(name, prefix) {
    return (name || "").replace(prefix, "").toLowerCase().replace(/_/g, " ");
  }

  // The rules considered for one decision, in evaluation order.
  function traceRow(body, trace) {
    const row = body.insertRow();
    row.className = "trace";
    const td = row.insertCell();
    td.colSpan = 5;
    const list = document.createElement("ol");
    for (const step of trace) {
      const li = document.createElement("li");
      li.className = "outcome-" + words(step.outcome, "TRACE_OUTCOME_").replace(/ /g, "-");
      li.appendChild(document.createTextNode(words(step.stage, "TRACE_STAGE_") + " "));
      if (step.rule) li.appendChild(ruleLink(step));
      li.appendChild(document.createTextNode(": " + words(step.outcome, "TRACE_OUTCOME_")));
      if (step.error) li.appendChild(document.createTextNode(" (" + step.error + ")"));
      if (step.decided) {
        const strong = document.createElement("strong");
        strong.textContent = " ← decided";
        li.appendChild(strong);
      }
      list.appendChild(li);
    }
    td.appendChild(list);
  }

  function showDecisions(answer) {
    const body = document.getElementById("decisions");
    body.replaceChildren();
    for (const result of answer.results || []) {
      const r = result.resource || {};
      for (const [action, d] of Object.entries(result.actions || {})) {
        const row = body.insertRow();
        cell(row, (r.kind || "") + (r.id ? " " + r.id : ""));
        cell(row, action);
        const allow = d.effect === "EFFECT_ALLOW";
        cell(row, allow ? "ALLOW" : "DENY", allow ? "effect-allow" : "effect-deny");
        ruleCell(row, d);
        cell(row, d.reason || "");
        if (d.trace && d.trace.length) traceRow(body, d.trace);
      }
    }
    document.getElementById("decided-version").textContent = answer.policy_version || "";
    document.getElementById("answer").hidden = false;
  }

  function showPlan(body, answer) {
    document.getElementById("plan-for").textContent = body.resource_kind + " / " + body.action;
    document.getElementById("plan-kind").textContent = answer.kind || "";
    document.getElementById("plan-filter").textContent = answer.readable || "";
    document.getElementById("plan-sql").textContent = answer.sql ? answer.sql.where : "(no dialect chosen)";
    document.getElementById("plan-params").textContent = answer.sql ? JSON.stringify(answer.sql.params) : "";
    document.getElementById("plan-columns").textContent = answer.columns ? JSON.stringify(answer.columns) : "";
  }

  async function decide() {
    show(error, "");
    let body;
    try {
      body = JSON.parse(request.value);
    } catch (e) {
      show(error, "The request is not JSON: " + e.message);
      return;
    }
    if (body.explain === undefined) body.explain = true;
    try {
      showDecisions(await post("/api/check", body));
    } catch (e) {
      document.getElementById("answer").hidden = true;
      show(error, e.message);
      return;
    }
    const plan = document.getElementById("plan");
    const planError = document.getElementById("plan-error");
    const first = (body.resources || [])[0];
    if (!first || !first.resource || !(first.actions || []).length) {
      plan.hidden = true;
      return;
    }
    const planBody = {
      principal: body.principal || {},
      resource_kind: first.resource.kind,
      action: first.actions[0],
      context: body.context || {},
    };
    const dialect = document.getElementById("dialect").value;
    if (dialect) planBody.sql = { dialect: dialect };
    plan.hidden = false;
    show(planError, "");
    try {
      showPlan(planBody, await post("/api/plan", planBody));
    } catch (e) {
      showPlan(planBody, {});
      show(planError, e.message);
    }
  }

  field("kind").addEventListener("change", fillActions);
  builder.addEventListener("input", build);
  builder.addEventListener("change", build);
  document.getElementById("decide").addEventListener("click", decide);
  fillActions();
  build();
})();
