// Calls to chainrule's REST API from a page, with the bearer token when the server asks for one.
//
// The server marks its pages with <body data-auth="bearer"> when tokens are configured. The page then
// asks for a token before its first call (a form, not window.prompt) and keeps it for the browser tab
// only (sessionStorage); a 401 forgets it and asks again.

const KEY = "chainrule-token";

export function authRequired() {
  return document.body.dataset.auth === "bearer";
}

export function token() {
  return sessionStorage.getItem(KEY) || "";
}

export function authorization() {
  return authRequired() && token() ? { authorization: `Bearer ${token()}` } : {};
}

/** Resolve once a token is known (at once when none is needed), showing the token form until then. */
export function tokenReady(problem = "") {
  if (!authRequired() || (token() && !problem)) return Promise.resolve();
  const form = document.getElementById("token-form");
  const input = document.getElementById("token");
  document.getElementById("token-problem").textContent = problem;
  form.hidden = false;
  input.focus();
  return new Promise((resolve) => {
    form.addEventListener("submit", function submitted(event) {
      event.preventDefault();
      if (!input.value.trim()) return;
      sessionStorage.setItem(KEY, input.value.trim());
      input.value = "";
      form.hidden = true;
      form.removeEventListener("submit", submitted);
      resolve();
    });
  });
}

/** The 401 of a call: thrown so the caller can ask for the token again. */
export class TokenRefused extends Error {}

/** POST `body` as JSON to `path`; the parsed reply, or an Error carrying the google.rpc.Status. */
export async function post(path, body) {
  await tokenReady();
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...authorization() },
    body: JSON.stringify(body),
  });
  const reply = await response.json();
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    throw new TokenRefused(reply.message || "the token was refused");
  }
  if (!response.ok) {
    const error = new Error(reply.message || `HTTP ${response.status}`);
    error.status = reply;
    throw error;
  }
  return reply;
}
