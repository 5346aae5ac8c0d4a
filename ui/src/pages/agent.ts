import { h, show } from "../lib";

// pageAgent: one agent's flows, retransmits and RTT over time, and its
// probe results. (Being built: issue 19.)
export async function pageAgent(_signal: AbortSignal, params: Record<string, string>) {
  show(h("h1", {}, `Agent ${params.id}`), h("p", {}, `Tenant ${params.tenant}.`));
}
