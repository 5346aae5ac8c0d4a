import { h, show } from "../lib";

// pageAudit: browse, filter, verify and export the audit log. (Being
// built: issue 19.)
export async function pageAudit(_signal: AbortSignal) {
  show(h("h1", {}, "Audit"));
}
