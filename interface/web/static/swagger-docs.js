// Swagger UI for /api/docs, from the vendored swagger-ui-dist (no inline script: the console's CSP).
window.addEventListener("load", function () {
  "use strict";
  window.ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,          // never send our API description to a third-party validator
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    persistAuthorization: false  // a pasted API token is not kept in the browser's storage
  });
});
