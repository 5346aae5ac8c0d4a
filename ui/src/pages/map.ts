import { h, show } from "../lib";

// pageMap: the service map of who talks to whom. (Being built: issue 19.)
export async function pageMap(_signal: AbortSignal) {
  show(h("h1", {}, "Service map"));
}
