import { h, show } from "../lib";

// pageProbes: probe sets for a selector of agents, and their results.
// (Being built: issue 19.)
export async function pageProbes(_signal: AbortSignal) {
  show(h("h1", {}, "Probes"));
}
