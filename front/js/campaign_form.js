// The campaign form's platform presets: a click fills the identity parameter and the
// parameters to record (the admin may still type anything in both). Plain ES module.

for (const button of document.querySelectorAll("button.preset[data-preset]")) {
  button.addEventListener("click", () => {
    const form = button.closest("form");
    if (!form) return;
    const identity = form.elements.namedItem("identity_param");
    const capture = form.elements.namedItem("capture_params");
    if (identity) identity.value = button.dataset.identity || "";
    if (capture) capture.value = (button.dataset.capture || "").split(/\s+/).filter(Boolean).join(", ");
    for (const field of [identity, capture]) {
      if (field) field.dispatchEvent(new Event("input", { bubbles: true }));
    }
    if (capture) capture.focus();
  });
}
