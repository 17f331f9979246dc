// The playground's Differentiate request written out as curl, Python client and TypeScript client code.
//
// `view` is {expression, wrt: [[name, order], ...], simplification: "fast", explain, verify}; `where`
// is {origin: "http://host:8080", grpc: "host:50051", auth: bool}.

/** The proto3 JSON body of POST /v1/differentiate for a view. */
export function differentiateBody(view) {
  const body = { expression: view.expression };
  if (view.wrt.length) body.wrt = view.wrt.map(([variable, order]) => ({ variable, order }));
  body.simplification = `SIMPLIFICATION_${view.simplification.toUpperCase()}`;
  body.formats = ["OUTPUT_FORMAT_LATEX"];
  if (view.explain) body.explain = true;
  if (view.verify) body.verify = true;
  return body;
}

function shellQuote(text) {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

export function curl(view, where) {
  const lines = [`curl -s ${where.origin}/v1/differentiate`, `-H 'content-type: application/json'`];
  if (where.auth) lines.push(`-H "authorization: Bearer $CHAINRULE_TOKEN"`);
  lines.push(`-d ${shellQuote(JSON.stringify(differentiateBody(view)))}`);
  return lines.join(" \\\n  ");
}

// JSON strings and objects of strings and numbers are Python literals too.
const literal = (value) => JSON.stringify(value);

function wrtObject(view) {
  return Object.fromEntries(view.wrt);
}

export function python(view, where) {
  const args = [literal(view.expression)];
  if (view.wrt.length) args.push(literal(wrtObject(view)));
  args.push(`simplification=${literal(view.simplification)}`, "latex=True");
  if (view.explain) args.push("explain=True");
  if (view.verify) args.push("verify=True");
  const token = where.auth ? `, token=os.environ["CHAINRULE_TOKEN"]` : "";
  return [
    ...(where.auth ? ["import os", ""] : []),
    "from chainrule.client import Client",
    "",
    `with Client(${literal(where.grpc)}${token}) as client:`,
    `    result = client.differentiate(${args.join(", ")})`,
    "    print(result.derivative)",
  ].join("\n");
}

export function typescript(view, where) {
  const options = [];
  if (view.wrt.length) options.push(`wrt: ${literal(wrtObject(view))}`);
  options.push(`simplification: ${literal(view.simplification)}`, "latex: true");
  if (view.explain) options.push("explain: true");
  if (view.verify) options.push("verify: true");
  const token = where.auth ? ", { token: process.env.CHAINRULE_TOKEN }" : "";
  return [
    'import { ChainruleClient } from "@chainrule/client";',
    "",
    `const client = new ChainruleClient(${literal(where.grpc)}${token});`,
    `const result = await client.differentiate(${literal(view.expression)}, { ${options.join(", ")} });`,
    "console.log(result.derivative);",
    "client.close();",
  ].join("\n");
}
