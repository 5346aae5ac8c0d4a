import { h, show } from "../lib";

// pageAdmin: tenants, users and roles, tokens, peers and links. (Being
// built: issue 19.)
export async function pageAdmin(_signal: AbortSignal) {
  show(h("h1", {}, "Admin"));
}
