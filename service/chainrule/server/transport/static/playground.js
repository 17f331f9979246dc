// The playground: type an expression, see it checked as you type (Parse), its derivative typeset with
// the chain rule layer by layer (Differentiate), and f with its derivatives on one plot (Evaluate).
//
// Content-Security-Policy `default-src 'self'`: no inline script or style attribute anywhere. KaTeX
// typesets with katex.render() into DOM nodes and uPlot styles through the CSSOM, both allowed.
import { TokenRefused, authRequired, post, tokenReady } from "./api.js";
import * as snippets from "./snippets.js";

const $ = (id) => document.getElementById(id);
const POINTS = 401;
const CHECK_DELAY_MS = 200;
const REPLOT_DELAY_MS = 60;
const CARET_CONTEXT = 40;
const COLORS = ["#1d4e89", "#d1495b", "#2a9d4b"];
const GREEK = new Set(
  ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho sigma tau upsilon " +
    "phi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega").split(" "),
);
const EXAMPLES = ["sin(x^2)", "(3x + 1)^2", "sin(cos(exp(x^2)))", "log(x) / x", "x^2 y + sin(x y)"];

const state = {
  reading: null, // the last Parse reply, for `readingText`
  readingText: null,
  checks: 0, // sequence numbers: an answer to an older keystroke never overwrites a newer one
  plots: 0,
  view: null, // the view last differentiated
  variables: [],
  orders: new Map(), // variable -> order asked for
  at: new Map(), // variable -> value its slider fixes
  plot: null,
  plotLabels: "",
  yLimits: [-1, 1], // what the plot's y scale shows: set before each draw
};

// --- small helpers --------------------------------------------------------------------------------

function typeset(element, latex) {
  window.katex.render(latex, element, { throwOnError: false, displayMode: true });
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function debounce(fn, ms) {
  let timer;
  const call = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  call.cancel = () => clearTimeout(timer);
  return call;
}

function variableLatex(name) {
  const [, base, sub] = /^([A-Za-z][A-Za-z0-9]*?)(?:_(\w+))?$/.exec(name) || [null, name, undefined];
  const head = GREEK.has(base) ? `\\${base}` : base.length > 1 ? `\\mathit{${base}}` : base;
  return sub ? `${head}_{${sub}}` : head;
}

/** d/dx, d²/dx², ∂³/∂x²∂y as LaTeX for `wrt` ([[name, order], ...]). */
function operatorLatex(wrt, partial) {
  const d = partial ? "\\partial" : "d";
  const total = wrt.reduce((sum, [, order]) => sum + order, 0);
  const power = (n) => (n > 1 ? `^{${n}}` : "");
  const below = wrt.map(([name, order]) => `${d} ${variableLatex(name)}${power(order)}`).join("\\,");
  return `\\frac{${d}${power(total)}}{${below}}`;
}

function plainLabel(wrt) {
  const total = wrt.reduce((sum, [, order]) => sum + order, 0);
  if (wrt.length === 1 && total <= 3) return `f${"'".repeat(total)}`;
  return `d${total > 1 ? total : ""}f/${wrt.map(([name, order]) => `d${name}${order > 1 ? order : ""}`).join(" ")}`;
}

// --- the view: controls <-> URL -------------------------------------------------------------------

/** What the controls ask for; `wrt` lists the variables with a non-zero order, in the input's order. */
function currentView() {
  return {
    expression: $("expression").value,
    wrt: state.variables.map((name) => [name, state.orders.get(name) || 0]).filter(([, order]) => order > 0),
    simplification: $("simplification").value,
    explain: $("explain").checked,
    verify: $("verify").checked,
    plotVariable: $("plot-variable").value || state.variables[0] || "x",
    from: Number($("x-from").value),
    to: Number($("x-to").value),
    second: $("second").checked,
  };
}

/** The derivative actually taken: the server's default (the only variable, once) made explicit; a
 * constant's is by the plot's variable (the server answers 0 for a variable the text lacks). */
function effectiveWrt(view) {
  if (view.wrt.length) return view.wrt;
  return [[state.variables[0] || view.plotVariable, 1]];
}

function pairs(text) {
  return (text || "")
    .split(",")
    .map((item) => item.split(":"))
    .filter(([name, value]) => name && value !== undefined && Number.isFinite(Number(value)))
    .map(([name, value]) => [name, Number(value)]);
}

function writeUrl(view) {
  const params = new URLSearchParams({ e: view.expression });
  if (view.wrt.length) params.set("wrt", view.wrt.map(([name, order]) => `${name}:${order}`).join(","));
  params.set("s", view.simplification);
  params.set("explain", view.explain ? "1" : "0");
  params.set("verify", view.verify ? "1" : "0");
  params.set("plot", view.plotVariable);
  params.set("from", String(view.from));
  params.set("to", String(view.to));
  if (view.second) params.set("next", "1");
  const fixed = state.variables.filter((name) => name !== view.plotVariable && state.at.has(name));
  if (fixed.length) params.set("at", fixed.map((name) => `${name}:${state.at.get(name)}`).join(","));
  history.replaceState(null, "", `${location.pathname}?${params}`);
  $("permalink").href = location.href;
}

/** Set the controls from the URL; true when it names an expression to differentiate at once. */
function readUrl() {
  const params = new URLSearchParams(location.search);
  if (!params.has("e")) return false;
  $("expression").value = params.get("e");
  for (const [name, order] of pairs(params.get("wrt"))) state.orders.set(name, Math.max(0, Math.round(order)));
  for (const [name, value] of pairs(params.get("at"))) state.at.set(name, value);
  if (["none", "fast", "full"].includes(params.get("s"))) $("simplification").value = params.get("s");
  $("explain").checked = params.get("explain") !== "0";
  $("verify").checked = params.get("verify") !== "0";
  $("second").checked = params.get("next") === "1";
  for (const [id, key] of [["x-from", "from"], ["x-to", "to"]]) {
    if (params.has(key) && Number.isFinite(Number(params.get(key)))) $(id).value = params.get(key);
  }
  state.wantedPlotVariable = params.get("plot");
  return true;
}

// --- checking as you type (Parse) -----------------------------------------------------------------

function showError(text, error) {
  $("error").hidden = false;
  $("error-message").textContent = error.message;
  const caret = $("error-caret");
  if (error.position === undefined) {
    caret.hidden = true;
    return;
  }
  // Positions are in code points; Array.from splits by code point, as the server counts.
  const chars = Array.from(text);
  const start = Math.max(0, error.position - CARET_CONTEXT);
  const end = Math.min(chars.length, error.position + CARET_CONTEXT);
  const lead = start > 0 ? "…" : "";
  const shown = chars.slice(start, end).join("").replace(/\s/g, " ");
  caret.hidden = false;
  caret.textContent = `${lead}${shown}${end < chars.length ? "…" : ""}\n${" ".repeat(lead.length + error.position - start)}^`;
}

function showReading(text, reading) {
  $("preview").replaceChildren();
  if (reading.error) {
    showError(text, reading.error);
    return;
  }
  $("error").hidden = true;
  typeset($("preview"), `f = ${reading.latex}`);
  setVariables(reading.variables);
}

/** Check the text now (Parse); the reply, or null when a newer check superseded this one. */
async function checkText() {
  const text = $("expression").value;
  if (text === state.readingText) return state.reading;
  const sequence = ++state.checks;
  if (!text.trim()) {
    $("error").hidden = true;
    $("preview").replaceChildren();
    return null;
  }
  const reading = await call(() => post("/v1/parse", { expression: text }));
  if (sequence !== state.checks || reading === null) return null;
  state.reading = reading;
  state.readingText = text;
  showReading(text, reading);
  return reading;
}

const checkSoon = debounce(checkText, CHECK_DELAY_MS);

// --- controls that follow the expression's variables ----------------------------------------------

function setVariables(variables) {
  if (variables.join(",") === state.variables.join(",")) return;
  state.variables = variables;
  if (variables.length && !variables.some((name) => state.orders.get(name) > 0)) state.orders.set(variables[0], 1);
  const box = $("wrt-variables");
  box.replaceChildren();
  for (const name of variables) {
    const label = element("label", "variable");
    const input = element("input");
    Object.assign(input, { type: "number", min: "0", max: "20", step: "1", value: String(state.orders.get(name) || 0) });
    input.dataset.variable = name;
    input.addEventListener("change", () => {
      state.orders.set(name, Math.max(0, Math.round(Number(input.value) || 0)));
      if (state.view) run();
    });
    label.append(element("span", "name", name), input);
    box.append(label);
  }
  if (!variables.length) box.append(element("span", "note", "a constant: its derivative is 0"));
  const select = $("plot-variable");
  const keep = state.wantedPlotVariable || select.value;
  state.wantedPlotVariable = null;
  select.replaceChildren(...(variables.length ? variables : ["x"]).map((name) => new Option(name, name)));
  if (variables.includes(keep)) select.value = keep;
  buildSliders();
}

function buildSliders() {
  const box = $("sliders");
  box.replaceChildren();
  for (const name of state.variables) {
    if (name === $("plot-variable").value) continue;
    if (!state.at.has(name)) state.at.set(name, 1);
    const label = element("label", "slider");
    const input = element("input");
    Object.assign(input, { type: "range", min: "-10", max: "10", step: "0.1", value: String(state.at.get(name)) });
    input.dataset.variable = name;
    const shown = element("output", "", String(state.at.get(name)));
    input.addEventListener("input", () => {
      state.at.set(name, Number(input.value));
      shown.textContent = input.value;
      replotSoon();
    });
    label.append(element("span", "name", `${name} =`), input, shown);
    box.append(label);
  }
}

// --- calls ----------------------------------------------------------------------------------------

/** Run a call; a refused token asks for a new one and retries, other failures are shown. */
async function call(work) {
  for (;;) {
    try {
      const reply = await work();
      $("call-problem").hidden = true;
      return reply;
    } catch (error) {
      if (error instanceof TokenRefused) {
        await tokenReady(error.message);
        continue;
      }
      $("result").hidden = false;
      $("call-problem").hidden = false;
      $("call-problem").textContent = error.message;
      return null;
    }
  }
}

async function run() {
  checkSoon.cancel();
  const reading = await checkText();
  if (!reading || reading.error) return;
  const view = currentView();
  if (!view.wrt.length && state.variables.length > 1) {
    $("result").hidden = false;
    $("call-problem").hidden = false;
    $("call-problem").textContent = "Give at least one variable an order above 0.";
    return;
  }
  const reply = await call(() => post("/v1/differentiate", snippets.differentiateBody(view)));
  if (!reply || view.expression !== $("expression").value) return;
  state.view = view;
  showDerivative(view, reply);
  showSteps(view, reply.steps || []);
  showShare(view);
  await drawPlot(view);
}

// --- the answer -----------------------------------------------------------------------------------

const VERDICTS = {
  VERDICT_OK: ["verified", "ok"],
  VERDICT_MISMATCH: ["mismatch: please report", "bad"],
  VERDICT_INCONCLUSIVE: ["not checked: no finite point found", "neutral"],
};

function showDerivative(view, reply) {
  $("result").hidden = false;
  const partial = state.variables.length > 1;
  typeset($("derivative"), `${operatorLatex(effectiveWrt(view), partial)}\\, f = ${reply.latex}`);
  $("derivative-text").textContent = reply.derivative;
  $("derivative-latex").textContent = reply.latex;
  const badge = $("verdict");
  const verdict = reply.check && VERDICTS[reply.check.verdict];
  badge.hidden = !verdict;
  if (verdict) {
    badge.textContent = verdict[0];
    badge.className = `badge ${verdict[1]}`;
    badge.title = `largest relative error ${reply.check.maxRelativeError} (tolerance ${reply.check.tolerance})`;
  }
}

const CHAIN_COLUMNS = [
  ["outer", "outer f(u)"],
  ["inner", "inner u = g(x)"],
  ["outerDerivative", "f′(g(x))"],
  ["innerDerivative", "g′(x)"],
  ["product", "f′(g(x)) · g′(x)"],
];

function showSteps(view, steps) {
  const list = $("steps");
  list.replaceChildren();
  $("steps-section").hidden = !steps.length;
  const partial = state.variables.length > 1;
  for (const step of steps) {
    const item = element("li", step.chain ? "step chain" : "step");
    item.append(element("p", "description", step.description));
    const math = element("div", "math");
    const wrt = step.variable ? [[step.variable, 1]] : [];
    const operator = wrt.length ? `${operatorLatex(wrt, partial)}\\left[${step.expression.latex}\\right]` : "";
    typeset(math, operator ? `${operator} = ${step.result.latex}` : step.result.latex);
    item.append(math);
    if (step.chain) {
      const layer = element("div", "layer");
      for (const [key, title] of CHAIN_COLUMNS) {
        const cell = element("div", "cell");
        const formula = element("div", "formula");
        typeset(formula, step.chain[key].latex);
        cell.append(element("span", "title", title), formula);
        layer.append(cell);
      }
      item.append(layer);
    }
    list.append(item);
  }
}

function showShare(view) {
  writeUrl(view);
  const where = {
    origin: location.origin,
    grpc: `${location.hostname}:${document.body.dataset.grpcPort}`,
    auth: authRequired(),
  };
  const code = { curl: snippets.curl, python: snippets.python, typescript: snippets.typescript };
  for (const [name, write] of Object.entries(code)) $(`snippet-${name}`).textContent = write(view, where);
  $("share-section").hidden = false;
}

// --- the plot -------------------------------------------------------------------------------------

function linspace(from, to, count) {
  return Array.from({ length: count }, (_, i) => from + ((to - from) * i) / (count - 1));
}

// proto3 JSON writes non-finite doubles as strings: each becomes a gap in the line.
const finiteOrNull = (value) => (typeof value === "number" && Number.isFinite(value) ? value : null);

/** All the values, unless a few near a pole would flatten the rest: then the bulk of them. */
function yRange(series) {
  const values = series.flat().filter((v) => v !== null).sort((a, b) => a - b);
  if (!values.length) return [-1, 1];
  const at = (q) => values[Math.floor(q * (values.length - 1))];
  let [low, high] = [at(0), at(1)];
  const [bulkLow, bulkHigh] = [at(0.03), at(0.97)];
  if (high - low > 20 * (bulkHigh - bulkLow)) [low, high] = [bulkLow, bulkHigh];
  if (high - low < 1e-12) [low, high] = [low - 1, high + 1];
  const margin = (high - low) * 0.06;
  return [low - margin, high + margin];
}

async function drawPlot(view) {
  const sequence = ++state.plots;
  const name = view.plotVariable;
  const from = Number.isFinite(view.from) ? view.from : -5;
  const to = Number.isFinite(view.to) && view.to !== from ? view.to : from + 10;
  const xs = linspace(from, to, POINTS);
  const points = { [name]: { values: xs } };
  for (const other of state.variables) if (other !== name) points[other] = { values: [state.at.get(other) ?? 1] };
  const wrt = effectiveWrt(view);
  const curves = [{ label: "f", wrt: [] }, { label: plainLabel(wrt), wrt }];
  if (view.second) {
    const next = wrt.some(([v]) => v === name) ? wrt.map(([v, o]) => [v, v === name ? o + 1 : o]) : [...wrt, [name, 1]];
    curves.push({ label: plainLabel(next), wrt: next });
  }
  // One batched Evaluate per curve: all the points in one call.
  const replies = await Promise.all(
    curves.map((curve) =>
      call(() =>
        post("/v1/evaluate", {
          expression: view.expression,
          points,
          wrt: curve.wrt.map(([variable, order]) => ({ variable, order })),
        }),
      ),
    ),
  );
  if (sequence !== state.plots || replies.includes(null)) return;
  const ys = replies.map((reply) => reply.values.values.map(finiteOrNull));
  render(name, xs, ys, curves);
  const gaps = ys.map((column, i) => [curves[i].label, column.filter((v) => v === null).length]);
  const noted = gaps.filter(([, count]) => count > 0).map(([label, count]) => `${label} at ${count}`);
  $("plot-note").textContent = noted.length
    ? `Not a finite real (left as gaps) for ${noted.join(", ")} of ${POINTS} points.`
    : "";
  $("plot").dataset.gaps = String(gaps.reduce((sum, [, count]) => sum + count, 0));
}

function render(name, xs, ys, curves) {
  const box = $("plot");
  $("plot-section").hidden = false;
  const labels = [name, ...curves.map((c) => c.label)].join("|");
  state.yLimits = yRange(ys);
  if (state.plot && state.plotLabels === labels) {
    state.plot.setData([xs, ...ys]);
    return;
  }
  state.plot?.destroy();
  state.plotLabels = labels;
  state.plot = new window.uPlot(
    {
      width: Math.max(300, box.clientWidth),
      height: 360,
      scales: { x: { time: false }, y: { range: () => state.yLimits } },
      series: [
        { label: name },
        ...curves.map((curve, i) => ({ label: curve.label, stroke: COLORS[i], width: 2, spanGaps: false })),
      ],
    },
    [xs, ...ys],
    box,
  );
  box.dataset.series = String(curves.length);
}

const replotSoon = debounce(() => {
  if (!state.view) return;
  state.view = { ...currentView(), expression: state.view.expression, wrt: state.view.wrt };
  writeUrl(state.view);
  drawPlot(state.view);
}, REPLOT_DELAY_MS);

// --- wiring ---------------------------------------------------------------------------------------

function copy(text) {
  return navigator.clipboard?.writeText(text).catch(() => {});
}

function wire() {
  $("expression").addEventListener("input", () => checkSoon());
  $("expression-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });
  for (const id of ["simplification", "explain", "verify"]) $(id).addEventListener("change", () => state.view && run());
  for (const id of ["x-from", "x-to", "second"]) $(id).addEventListener("change", replotSoon);
  $("plot-variable").addEventListener("change", () => {
    buildSliders();
    replotSoon();
  });
  for (const button of document.querySelectorAll("button.copy[data-copy]")) {
    button.addEventListener("click", () => copy($(button.dataset.copy).textContent));
  }
  document.querySelector("[data-copy-href]").addEventListener("click", () => copy($("permalink").href));
  $("copy-snippet").addEventListener("click", () => {
    copy(document.querySelector(".snippet:not([hidden])").textContent);
  });
  for (const tab of document.querySelectorAll("[data-tab]")) {
    tab.addEventListener("click", () => {
      for (const other of document.querySelectorAll("[data-tab]")) other.setAttribute("aria-selected", String(other === tab));
      for (const panel of document.querySelectorAll("[data-panel]")) panel.hidden = panel.dataset.panel !== tab.dataset.tab;
    });
  }
  const examples = element("p", "examples", "Try ");
  for (const example of EXAMPLES) {
    const button = element("button", "example", example);
    button.type = "button";
    button.addEventListener("click", () => {
      $("expression").value = example;
      run();
    });
    examples.append(button);
  }
  $("preview").before(examples);
  window.addEventListener("resize", () => state.plot?.setSize({ width: Math.max(300, $("plot").clientWidth), height: 360 }));
}

async function start() {
  wire();
  const fromUrl = readUrl();
  document.body.dataset.ready = "true"; // wired: what is typed from now on is handled
  $("expression").focus();
  await tokenReady();
  if (fromUrl) await run();
}

start();
