// Renders openapi.json (beside this file, written at build time by
// docs/hooks.py) with the Swagger UI files beside it: nothing is loaded from
// anywhere else (no validator badge either), and no request can be tried
// from here (the site has no service behind it).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    supportedSubmitMethods: [],
    displayRequestDuration: true,
  });
});
