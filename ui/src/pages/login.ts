import { api, APIError, h, loadWho, show } from "../lib";

export function pageLogin() {
  const err = h("p", { class: "error", role: "alert" });
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: "" }) as HTMLInputElement;
  const pass = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: "" }) as HTMLInputElement;
  const form = h("form", { class: "login", "aria-labelledby": "login-title" },
    h("label", { for: "username" }, "User", user),
    h("label", { for: "password" }, "Password", pass),
    h("button", { type: "submit" }, "Log in"), err) as HTMLFormElement;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    try {
      await api("POST", "/api/v1/login", { username: user.value, password: pass.value });
      await loadWho();
      location.hash = "#/overview";
    } catch (e) {
      err.textContent = e instanceof APIError ? e.message : String(e);
    }
  });
  const oidc = h("p", {}, h("a", { href: "/api/v1/auth/oidc/login", id: "oidc-login" }, "Log in with single sign-on (OIDC)"),
    " where the region has an identity provider configured.");
  show(h("h1", { id: "login-title" }, "Log in to Outpost"), form, oidc);
  user.focus();
}
