// /docs: Swagger UI over /openapi.json, served by chainrule itself; "Try it out" calls this server,
// with the bearer token when the server asks for one (the same token form as the playground).
import { authorization, tokenReady } from "./api.js";

async function start() {
  await tokenReady();
  window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger",
    deepLinking: true,
    tryItOutEnabled: false,
    displayRequestDuration: true,
    // Never send the document to the online validator (on by default for hosts but localhost).
    validatorUrl: null,
    // The spec and every "Try it out" call go through here.
    requestInterceptor: (request) => {
      Object.assign(request.headers, authorization());
      return request;
    },
  });
}

start();
